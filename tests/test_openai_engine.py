"""The OpenAI-compatible engine against a stub server that answers like dots.ocr: boxes
land on the right pixels of a page the model saw resized, pages come back in order while
several are in flight, failures and cancels keep the other pages."""

import base64
import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml
from PIL import Image

from managers import runs
from managers.engines.openai import OpenAIEngine
from managers.runs import make_engine
from managers.runtime import Runtime
from models import layout
from models.config import load_config
from models.document import Page, open_document
from tests.conftest import ROOT
from tests.containers import free_port
from tests.fixtures.openai_stub import OpenAIStub, ink_lines
from tests.helpers import ENGLISH, MIXED, encode, line_boxes, pdf_of_images, render_lines
from tests.test_tesseract import FailingPage


def stub_config(tmp_path, url: str, **requests):
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    dots = data["models"]["dots_ocr"]
    dots["max_pixels"] = 1_003_520  # a small cap, so every A4 page is resized before it is sent
    dots["vllm"] = {"endpoint": url, "served_model_name": "stub"}
    data["requests"].update(requests)
    data["default_model"] = "tesseract"
    path = tmp_path / "stub.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return load_config(path)


@pytest.fixture
def stub():
    server = OpenAIStub()
    yield server
    server.close()


@pytest.fixture
def engine(tmp_path, stub):
    return make_engine(Runtime(stub_config(tmp_path, stub.url)), "dots_ocr", "vllm")


def test_remote_entry_needs_no_container(engine, tmp_path, stub):
    from managers.runs import managed

    assert isinstance(engine, OpenAIEngine) and engine.engine_name == "remote"
    assert not managed(stub_config(tmp_path, stub.url), "dots_ocr", "vllm")  # no switch, no lease


def test_layout_boxes_land_on_the_lines_of_a_resized_page(engine, stub):
    page = engine.process_image(render_lines(MIXED), "layout_all")
    assert page.error is None, page.error
    sent = stub.requests[0]["messages"][0]["content"]
    assert sent[1]["text"] == engine.model.tasks["layout_all"].prompt  # verbatim, after the image
    h, w = layout.smart_resize(2339, 1654, max_pixels=1_003_520)
    assert (w, h) != (1654, 2339)
    assert [b.text for b in page.blocks] == [f"line {n}" for n in range(1, 5)]
    for block, drawn in zip(page.blocks, line_boxes(MIXED)):
        assert all(abs(a - b) <= 6 for a, b in zip(block.bbox, drawn)), (block.bbox, drawn)
    assert page.markdown.startswith("line 1\n\nline 2")


def test_pages_come_back_in_order_while_several_are_in_flight(tmp_path, stub, limits):
    # Page k has k + 1 lines; pages with an even count are slow, so answers finish out of order.
    stub.delay = lambda image: 0.6 if len(ink_lines(image)) % 2 == 0 else 0.05
    engine = make_engine(Runtime(stub_config(tmp_path, stub.url, concurrency=3)), "dots_ocr", "vllm")
    pages = [render_lines(ENGLISH[:1] * (k + 1)) for k in range(7)]
    doc = open_document(pdf_of_images(pages), "seven.pdf", limits)
    progress = []
    result = engine.ocr(doc.pages(), "layout_all", on_page=lambda done, total, p: progress.append((done, p.index)))
    assert [p.index for p in result.pages] == list(range(7))
    assert [len(p.blocks) for p in result.pages] == [k + 1 for k in range(7)]
    assert [d for d, _ in progress] == list(range(1, 8))
    assert [i for _, i in progress] != list(range(7))  # completion order differed
    assert 2 <= stub.most_in_flight <= 3


def test_a_failed_page_keeps_its_error_and_the_others(engine):
    pages = [Page(0, render_lines(ENGLISH[:1], size=(800, 300))), FailingPage(),
             Page(2, render_lines(ENGLISH[:2], size=(800, 300)))]
    result = engine.ocr(pages, "layout_all")
    assert [p.index for p in result.pages] == [0, 1, 2]
    assert result.pages[1].error.startswith("Page 2 of 'x.pdf' cannot be rendered")
    assert [len(p.blocks) for p in (result.pages[0], result.pages[2])] == [1, 2]


def test_cancel_stops_the_pages_not_yet_sent(tmp_path, stub):
    stub.delay = 0.3
    engine = make_engine(Runtime(stub_config(tmp_path, stub.url, concurrency=2)), "dots_ocr", "vllm")
    cancel = threading.Event()
    pages = [Page(i, render_lines(ENGLISH[:1], size=(600, 200))) for i in range(8)]
    result = engine.ocr(pages, "layout_all", on_page=lambda *a: cancel.set(), cancel=cancel)
    read = [p for p in result.pages if not p.error]
    cancelled = [p for p in result.pages if p.error]
    # The first answer cancels: the page in flight beside it is abandoned or lands with it,
    # and nothing more is sent.
    assert len(result.pages) == 8 and 1 <= len(read) <= 2 and len(cancelled) >= 6
    assert all(p.error == f"Page {p.index + 1} was not read: cancelled." for p in cancelled)
    assert len(stub.requests) == 2


def test_request_timeout_is_one_sentence(tmp_path, stub):
    stub.delay = 2.0
    engine = make_engine(Runtime(stub_config(tmp_path, stub.url, timeout_s=0.3)), "dots_ocr", "vllm")
    page = engine.process_image(render_lines(ENGLISH[:1], size=(600, 200)), "layout_all")
    assert page.error == "The model server did not answer page 1 within 0.3 s (requests.timeout_s)."


def test_unreachable_endpoint(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    engine = make_engine(Runtime(stub_config(tmp_path, url)), "dots_ocr", "vllm")
    page = engine.process_image(render_lines(ENGLISH[:1], size=(600, 200)), "ocr")
    assert page.error == f"Cannot reach the model server at {url} for page 1; is it running?"


def test_an_answer_without_json_is_kept_as_text(engine, stub):
    stub.answer = lambda image: "Just some words, no JSON here."
    page = engine.process_image(render_lines(ENGLISH[:1], size=(600, 200)), "layout_all")
    assert page.text == "Just some words, no JSON here."
    assert page.warnings[-1] == "The answer held no layout JSON; it is shown as plain text."
    assert page.blocks[0].bbox == (0, 0, 600, 200)


def test_text_tasks_give_one_block_over_the_page(engine, stub):
    stub.answer = lambda image: "# Heading\nbody"
    page = engine.process_image(render_lines(ENGLISH[:1], size=(600, 200)), "ocr")
    # parsed once into typed blocks; the Markdown and the text are rendered from them
    assert [e.type for e in page.elements] == ["heading", "paragraph"]
    assert page.markdown == "# Heading\n\nbody" and page.text == "Heading\n\nbody"
    assert [(b.bbox, b.category) for b in page.blocks] == [((0, 0, 600, 200), "Text")]


def test_grounding_sends_the_box_in_the_models_pixels(engine, stub):
    stub.answer = lambda image: "Invoice"
    image = render_lines(ENGLISH, size=(1654, 2339))
    assert "enter the box first" in engine.process_image(image, "grounding_ocr").error
    engine.box = (100, 100, 900, 300)
    assert engine.process_image(image, "grounding_ocr").text == "Invoice"
    prompt = stub.requests[-1]["messages"][0]["content"][1]["text"]
    h, w = layout.smart_resize(2339, 1654, max_pixels=1_003_520)
    assert prompt.endswith("Bounding Box:\n" + str([round(100 * w / 1654), round(100 * h / 2339),
                                                     round(900 * w / 1654), round(300 * h / 2339)]))


def test_chat_sends_the_image_and_the_conversation(engine, stub):
    stub.answer = lambda image: f"an answer about a {image.width}px wide page"
    image = render_lines(ENGLISH[:1], size=(600, 200))
    reply = engine.chat(image, [("user", "What is this?"), ("assistant", "An invoice.")], "Which number?")
    assert reply.startswith("an answer about a ")
    messages = stub.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0]["type"] == "image_url" and messages[2]["content"] == "Which number?"


def test_cli_sends_to_an_endpoint(tmp_path, stub):
    (tmp_path / "p.png").write_bytes(encode(render_lines(MIXED), "PNG"))
    done = subprocess.run([sys.executable, "cli.py", "ocr", str(tmp_path / "p.png"), "--model", "dots_ocr",
                           "--endpoint", stub.url, "--task", "layout_all", "--format", "json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CHATVLMLLM_CONFIG": str(ROOT / "config.yaml")})
    # The shipped entry serves dots-ocr; the stub answers whatever name it is asked for.
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["engine"] == "remote" and len(result["pages"][0]["blocks"]) == 4


def test_app_reads_through_a_remote_endpoint_and_chats(tmp_path, stub, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    config = stub_config(tmp_path, stub.url)
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(tmp_path / "stub.yaml"))
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="mode").set_value("vllm").run()
    picker = at.sidebar.selectbox(key="model_vllm")
    assert picker.value == "dots_ocr" and picker.format_func("dots_ocr").endswith("dots.ocr · remote")
    assert f"**Remote endpoint:** {stub.url}" in [m.value for m in at.sidebar.markdown]
    assert "answering" in [c.value for c in at.sidebar.caption]
    at.file_uploader[0].upload("tender.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.run()
    assert at.selectbox(key="task_dots_ocr").value == "layout_all"
    at.checkbox(key="hide_hf").check()
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("Read 1 of 1 pages with remote")
    assert len(at.tabs[2].image) == 1 and at.tabs[2].text[0].value == "Text"  # overlay and legend
    assert len(json.loads(at.tabs[3].json[0].value)["blocks"]) == 4
    assert at.code[0].value.startswith("line 1")
    at.chat_input(key="chat_input").set_value("What is on this page?").run()
    assert not at.exception
    said = [m.text[0].value for m in at.tabs[4].chat_message]  # as text, never as Markdown
    assert said[0] == "What is on this page?" and len(said) == 2
    assert stub.requests[-1]["messages"][-1]["content"][1]["text"] == "What is on this page?"
    # The page and the answer both came streamed, and the answer shown is the whole of it.
    assert [r["stream"] for r in stub.requests] == [True, True] and all(s.completed for s in stub.streams)
    assert said[1] == "".join(stub.streams[-1].pieces)
    assert config.models["dots_ocr"].vllm.remote


def test_page_warnings_appear_once(engine, limits):
    import pymupdf

    pdf = pymupdf.open()
    pdf.new_page(width=72 * 30, height=72 * 30)  # a poster page, rendered below pdf_dpi
    doc = open_document(pdf.tobytes(), "poster.pdf", limits.model_copy(update={"max_image_pixels": 4_000_000}))
    through_ocr = engine.ocr(doc.pages(), "ocr").pages[0].warnings
    one_page = engine._read_one(doc.pages()[0], engine.model.tasks["ocr"]).warnings
    assert through_ocr == one_page and sum("rendered at 66 dpi" in w for w in one_page) == 1


def test_a_sideways_page_reaches_the_model_upright(tmp_path, stub):
    """Page preparation runs for VLMs too: the stub sees the page the right way up, and the
    boxes it finds come back on the prepared (upright) page."""
    config = stub_config(tmp_path, stub.url)
    upright = render_lines(MIXED)
    sideways = upright.rotate(90, expand=True)  # turned counter-clockwise, no EXIF to undo it
    run = runs.read_document(Runtime(config), runs.Choice("dots_ocr", "vllm", "layout_all"), [Page(0, sideways)])
    page = run.result.pages[0]
    assert page.error is None and (page.width, page.height) == upright.size
    assert "turned 90° clockwise" in page.warnings[0]
    sent = stub.requests[-1]["messages"][0]["content"][0]["image_url"]["url"]
    seen = Image.open(io.BytesIO(base64.b64decode(sent.split(",", 1)[1])))
    assert seen.height > seen.width  # portrait, as the page was written
    assert len(page.blocks) == len(MIXED)  # one band of ink per written line, so it was upright
    assert run.images[0].size == upright.size  # the page the boxes belong to is kept


def test_cancel_answers_at_once_while_pages_are_in_flight(tmp_path, stub):
    """The loop does not wait for the pages in flight: it returns while the server still holds them."""
    gate = threading.Event()
    stub.delay = lambda image: gate.wait(60) and 0
    engine = make_engine(Runtime(stub_config(tmp_path, stub.url, concurrency=2)), "dots_ocr", "vllm")
    cancel = threading.Event()
    pages = [Page(i, render_lines(ENGLISH[:1], size=(600, 200))) for i in range(4)]

    def cancel_when_both_are_in_flight():
        while stub.in_flight < 2:
            gate.wait(0.01)
        cancel.set()

    threading.Thread(target=cancel_when_both_are_in_flight, daemon=True).start()
    try:
        result = engine.ocr(pages, "layout_all", cancel=cancel)
        assert not gate.is_set() and stub.in_flight == 2  # returned with both still unanswered
    finally:
        gate.set()
    assert [p.error for p in result.pages] == [f"Page {i} was not read: cancelled." for i in range(1, 5)]


def test_remote_readiness_sends_the_endpoints_own_key(tmp_path, stub, monkeypatch):
    from managers.readiness import endpoint_ready

    config = stub_config(tmp_path, stub.url)
    backend = config.models["dots_ocr"].vllm.model_copy(update={"api_key_env": "STUB_KEY"})
    monkeypatch.setenv("STUB_KEY", "remote-secret")
    assert endpoint_ready(backend) == (True, "")
    assert stub.authorization[-1] == "Bearer remote-secret"


# --- streaming: the answer as it is generated ------------------------------------------------

def streamed_read(engine, page, cancel=None):
    """A page read with on_text: the result and every (index, text so far) it was given."""
    seen = []
    result = engine.ocr([page], "layout_all", cancel=cancel, on_text=lambda i, text: seen.append((i, text)))
    return result.pages[0], seen


def test_a_streamed_page_is_the_same_page_as_a_whole_answer(engine, stub):
    page = Page(0, render_lines(MIXED))
    whole = engine.ocr([page], "layout_all").pages[0]
    streamed, seen = streamed_read(engine, page)
    assert whole.error is None and streamed.error is None
    assert streamed.model_dump(exclude={"seconds"}) == whole.model_dump(exclude={"seconds"})
    sent = stub.streams[0]
    assert sent.ended.wait(10) and sent.completed and len(sent.pieces) > 3  # it really came in pieces
    texts = [text for _, text in seen]
    assert {i for i, _ in seen} == {0} and texts[-1] == "".join(sent.pieces)
    assert len(texts) == len(sent.pieces)
    assert all(later.startswith(earlier) and len(later) > len(earlier) for earlier, later in zip(texts, texts[1:]))
    one, other = stub.requests  # the same request, streamed or not
    assert other.pop("stream") is True and one.pop("stream", False) is False and one == other


def test_a_stream_cut_at_max_tokens_says_so_like_a_whole_answer(engine, stub):
    stub.finish = "length"
    page = Page(0, render_lines(ENGLISH[:2], size=(600, 200)))
    whole = engine.ocr([page], "layout_all").pages[0]
    streamed, _ = streamed_read(engine, page)
    cut = f"The answer was cut at {engine.requests.max_tokens} tokens (requests.max_tokens)."
    assert cut in whole.warnings and streamed.warnings == whole.warnings


def test_cancel_mid_stream_hangs_up_on_the_server(engine, stub, caplog):
    """Cancelled after the first piece while the server is still thinking about the second:
    the page is abandoned at once, its thread hangs up without waiting for the server, and
    the server finds nobody listening when it goes on."""
    thinking = threading.Event()
    stub.chunk_delay = lambda n: (thinking.wait(60) and 0) if n == 1 else 0.05
    cancel = threading.Event()
    seen = []
    try:
        result = engine.ocr([Page(0, render_lines(MIXED))], "layout_all", cancel=cancel,
                            on_text=lambda i, text: (seen.append(text), cancel.set()))
        assert result.pages[0].error == "Page 1 was not read: cancelled."
        for thread in threading.enumerate():
            if thread.name.startswith("remote-page"):
                thread.join(30)
                assert not thread.is_alive() and not thinking.is_set()
    finally:
        thinking.set()
    sent = stub.streams[0]
    assert sent.ended.wait(30)
    assert not sent.completed and sent.sent < len(sent.pieces) and len(seen) == 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no traceback from the abandoned page


@pytest.mark.parametrize("how", ["drop", "error event"])
def test_a_stream_that_breaks_is_the_pages_sentence(engine, stub, how):
    stub.break_after = 2
    stub.error_event = "boom: the engine died" if how == "error event" else None
    page, seen = streamed_read(engine, Page(0, render_lines(MIXED)))
    assert len(seen) == 2
    assert page.error == (f"Cannot reach the model server at {stub.url} for page 1; is it running?" if how == "drop"
                          else "The model server failed while answering page 1: boom: the engine died")


def test_chat_streams_its_answer(engine, stub):
    stub.answer = lambda image: "A long answer about this page, in several pieces."
    seen = []
    reply = engine.chat(render_lines(ENGLISH[:1], size=(600, 200)), [], "What is this?", on_text=seen.append)
    assert reply == seen[-1] == "A long answer about this page, in several pieces."
    assert len(seen) == len(stub.streams[0].pieces) > 1 and stub.requests[-1]["stream"] is True


def test_a_batch_shows_the_page_being_read_until_it_is_done(tmp_path, stub):
    from managers.batch import Batch, Item

    gate = threading.Event()
    stub.chunk_delay = lambda n: (gate.wait(60) and 0) if n == 3 else 0
    config = stub_config(tmp_path, stub.url)
    job = Batch(Runtime(config), runs.Choice("dots_ocr", "vllm", "layout_all"),
                [Item("k", "p.png", [Page(0, render_lines(MIXED))])])
    try:
        while not (job.streaming and len(job.streaming[1]) == 3 * stub.chunk_chars):
            assert job.running
            time.sleep(0.02)
        assert job.streaming == (0, "".join(stub.streams[0].pieces[:3]))
    finally:
        gate.set()
    while job.running:
        time.sleep(0.02)
    assert job.streaming is None and not job.errors
    assert len(job.runs["k"].result.pages[0].blocks) == len(MIXED)
