"""The Streamlit view driven headless through AppTest: sidebar, upload → run → result."""

import sqlite3

import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest


from tests.conftest import ROOT
from tests.helpers import ENGLISH, MIXED, RUSSIAN, cer, encode, pdf_of_images, render_lines
from tests.test_document import bad_inputs


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def start() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    return at


def upload(at: AppTest, name: str, data: bytes, mime="application/octet-stream") -> AppTest:
    at.file_uploader[0].upload(name, data, mime)
    return at.run()


def test_sidebar_opens_on_cpu_with_tesseract_here():
    at = start()
    assert at.sidebar.radio(key="mode").value == "cpu"
    assert at.sidebar.selectbox(key="model_cpu").value == "tesseract"
    assert "**Active model:** Tesseract 5" in [m.value for m in at.sidebar.markdown]
    assert not at.error


@pytest.mark.parametrize("mode", ["vllm", "local"])
def test_other_modes_explain_why_they_cannot_run(mode):
    at = start()
    at.sidebar.radio(key="mode").set_value(mode).run()
    assert not at.exception
    picker = at.sidebar.selectbox(key=f"model_{mode}")
    assert picker.value == "qwen3_vl_2b"
    assert "4.4 GB VRAM" in picker.format_func(picker.value)
    assert len(picker.options) == 5
    warning = at.sidebar.warning[0].value
    assert warning.startswith("Cannot run here: ")
    assert any(s in warning for s in ("Docker engine not reachable", "no NVIDIA GPU found",
                                      "weights are not on this machine"))
    upload(at, "page.png", encode(render_lines(ENGLISH[:1], size=(1000, 200)), "PNG"))
    assert at.button[0].disabled and not at.exception


def test_upload_run_and_read_the_result():
    at = upload(start(), "mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("Read 1 of 1 pages with tesseract")
    assert cer("\n".join(MIXED), at.code[0].value) <= 0.02
    assert [t.label for t in at.tabs] == ["Text", "Markdown", "Layout", "JSON", "Chat"]
    assert "Chat needs a vision-language model" in at.tabs[4].info[0].value
    assert len(at.tabs[2].image) == 1  # the layout overlay
    assert "Text" in at.tabs[2].text[0].value  # the legend
    assert RUSSIAN[0] in at.tabs[1].text[0].value  # the page's paragraphs, as text
    assert '"category": "Text"' in at.tabs[3].json[0].value
    assert len(at.get("download_button")) == 9  # page txt, md, json; document txt … pdf, not csv (no tables)


def test_multipage_pdf_has_page_navigation_and_progress():
    pdf = pdf_of_images([render_lines(RUSSIAN), render_lines(ENGLISH)])
    at = upload(start(), "two.pdf", pdf, "application/pdf")
    assert at.slider(key="pages_two.pdf").value == (1, 2)
    at.button[0].click().run()
    assert not at.exception
    assert at.success[0].value.startswith("Read 2 of 2 pages with tesseract")
    nav = at.selectbox(key="page_nav")
    assert nav.options == ["Page 1", "Page 2"]
    assert cer("\n".join(RUSSIAN), at.code[0].value) <= 0.02
    nav.set_value(1).run()
    assert cer("\n".join(ENGLISH), at.code[0].value) <= 0.02
    assert "Page 2: 1653×2339 px" in at.caption[0].value or any("Page 2: 1653×2339 px" in c.value for c in at.caption)


@pytest.mark.parametrize("case", ["empty", "truncated png", "text named png", "bomb", "encrypted pdf", "broken pdf"])
def test_bad_upload_is_one_readable_error(case):
    data, name, expected = bad_inputs()[case]
    at = upload(start(), name, data)
    assert not at.exception
    assert len(at.error) == 1 and expected in at.error[0].value
    assert not at.button  # nothing to run


def test_long_document_offers_a_page_range(tmp_path, monkeypatch):
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["limits"]["max_pages"] = 2
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(tmp_path / "c.yaml"))
    blank = render_lines([], size=(100, 100))
    at = upload(start(), "three.pdf", pdf_of_images([blank] * 3))
    assert "has 3 pages; up to 2 are read at a time" in at.info[0].value
    slider = at.slider(key="pages_three.pdf")
    assert slider.value == (1, 2)
    slider.set_value((1, 3)).run()
    assert "over the limit of 2" in at.error[0].value and at.button[0].disabled
    slider.set_value((2, 3)).run()
    at.button[0].click().run()
    assert at.selectbox(key="page_nav").options == ["Page 2", "Page 3"]


def test_broken_config_is_shown_not_raised(tmp_path, monkeypatch):
    (tmp_path / "c.yaml").write_text("default_model: tesseract\nmodels: {}\n")
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(tmp_path / "c.yaml"))
    at = AppTest.from_file(str(ROOT / "app.py")).run()
    assert not at.exception
    assert at.error[0].value.startswith("c.yaml: ")


def test_a_config_not_in_utf8_is_shown_not_raised(tmp_path, monkeypatch):
    from tests.test_config import cp1251_copy
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(cp1251_copy(tmp_path)))
    at = AppTest.from_file(str(ROOT / "app.py")).run()
    assert not at.exception
    assert at.error[0].value.endswith("save the file in the UTF-8 encoding.")


@pytest.mark.docker
def test_a_refused_lease_is_one_sentence_not_a_traceback(tmp_path, monkeypatch, clean_docker):
    """The model is taken away between Run and the first page: the app says so and goes on."""
    from managers import runs
    from tests.containers import fake_entry, write_config

    path = write_config(tmp_path / "c.yaml", {"fake_a": fake_entry("fake_a")})
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    monkeypatch.setattr(runs, "make_ready", lambda *args, **kwargs: None)  # someone else stopped it
    at = start()
    at.sidebar.radio(key="mode").set_value("vllm").run()
    at = upload(at, "p.png", encode(render_lines(ENGLISH[:1], size=(600, 200)), "PNG"), "image/png")
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Fake fake_a is not the active model (it was stopped, or another model took the GPU); "
        "start it again to read."]
    assert at.file_uploader  # the app is still there


def test_tables_show_as_tables_and_every_export_is_offered(tmp_path, monkeypatch):
    """A dots.ocr answer with two HTML tables: the Markdown tab shows two real tables and no
    model HTML; the document's downloads include csv (a ZIP of two), xlsx, docx and pdf."""
    import json

    from tests.fixtures.openai_stub import OpenAIStub
    from tests.test_exports import CELLS, SEEN
    from tests.test_openai_engine import stub_config

    def answer(image):  # the cells in the pixels of the image the stub was sent
        scale = (image.width / SEEN[0], image.height / SEEN[1])
        return json.dumps([{**cell, "bbox": [round(v * scale[n % 2]) for n, v in enumerate(cell["bbox"])]}
                           for cell in CELLS], ensure_ascii=False)

    stub = OpenAIStub(answer=answer)
    try:
        stub_config(tmp_path, stub.url)
        monkeypatch.setenv("CHATVLMLLM_CONFIG", str(tmp_path / "stub.yaml"))
        at = start()
        at.sidebar.radio(key="mode").set_value("vllm").run()
        at = upload(at, "tender.png", encode(render_lines(RUSSIAN), "PNG"), "image/png")
        next(b for b in at.button if b.label == "Run").click().run()
    finally:
        stub.close()
    assert not at.exception and not at.error
    markdown_tab = at.tabs[1]
    frames = markdown_tab.dataframe
    assert len(frames) == 2
    assert list(frames[0].value.columns) == ["№", "Наименование", "ОКПД2", "Цена, руб.", "column 5"]
    assert frames[0].value.iloc[0].tolist() == ["1", "Стул офисный", "26.20.15.000", "1 250 000,00", "-3,5"]
    assert list(frames[1].value.columns) == ["Item", "Qty", "Amount"]
    shown = " ".join(e.value for e in [*markdown_tab.get("html"), *markdown_tab.markdown, *markdown_tab.text])
    assert "Спецификация поставки" in shown and "<table" not in shown and "<td" not in shown
    offered = {b.proto.label for b in at.get("download_button") if not b.proto.disabled}
    assert {"Document .csv", "Document .xlsx", "Document .docx", "Document .pdf"} <= offered


def test_a_run_is_kept_and_reopened_from_history():
    at = upload(start(), "mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.button[0].click().run()
    assert at.success[0].value.startswith("Read 1 of 1 pages")
    at.sidebar.radio(key="view").set_value("history").run()
    assert not at.exception
    run = at.selectbox(key="history_run")
    assert "mixed.png · 1 p. · tesseract (CPU, text)" in run.format_func(run.value)
    assert cer("\n".join(MIXED), at.code[0].value) <= 0.02  # every tab as if just read
    assert len(at.tabs[2].image) == 1
    at.text_input(key="history_search").set_value("no-such-file").run()
    assert at.info[0].value == "No run of a file with that name."
    at.text_input(key="history_search").set_value("MIXED").run()
    at.button(key="history_delete").click().run()
    assert at.info[0].value == "No run of a file with that name."


def kept_and_listed(tmp_path) -> tuple[AppTest, sqlite3.Connection]:
    """A document read and shown in the History view, with the database open beside the app
    as another session or process would have it."""
    at = upload(start(), "mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.button[0].click().run()
    at.sidebar.radio(key="view").set_value("history").run()
    assert not at.exception and not at.error
    return at, sqlite3.connect(tmp_path / "data" / "history.sqlite3", isolation_level=None)


@pytest.mark.parametrize("damage", [
    "UPDATE runs SET result = '{\"pages\": ['",
    "INSERT OR REPLACE INTO images (run_id, page, png) SELECT id, 0, x'89504e470d0a1a0a00' FROM runs",
    "UPDATE runs SET box = 'not json'",
])
def test_a_damaged_row_in_the_history_is_one_sentence(tmp_path, damage):
    at, db = kept_and_listed(tmp_path)
    db.execute(damage)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "The run of 'mixed.png' kept in the history is damaged and cannot be reopened; delete it."]
    at.button(key="history_delete").click().run()  # and it can be deleted
    assert not at.exception and at.info[0].value == "No runs kept yet."


def test_a_damaged_kept_document_is_one_sentence(tmp_path):
    at, db = kept_and_listed(tmp_path)
    db.execute("UPDATE documents SET data = CAST('text, not a picture' AS BLOB)")
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["'mixed.png' is not a PNG file: it holds text."]


def test_a_delete_the_database_refuses_is_one_sentence(tmp_path):
    at, db = kept_and_listed(tmp_path)
    db.execute("CREATE TRIGGER refuse BEFORE DELETE ON runs BEGIN SELECT RAISE(ABORT, 'no deletes here'); END")
    at.button(key="history_delete").click().run()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("The history database ") and error.value.endswith("(no deletes here).")
    db.execute("DROP TRIGGER refuse")


def test_a_damaged_history_is_one_sentence_and_the_app_goes_on(tmp_path):
    import os

    data = tmp_path / "data"  # the conftest's data dir for this test
    data.mkdir(exist_ok=True)
    assert os.environ["CHATVLMLLM_DATA_DIR"] == str(data)
    path, garbage = data / "history.sqlite3", b"SQLite format 3\x00" + b"\x00" * 90 + b"garbage" * 50
    path.write_bytes(garbage)
    sentence = (f"The history database {path} is damaged (file is not a database), so no run is kept in it; "
                "move the file away (nothing was deleted) and a new history starts.")
    at = upload(start(), "mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.button[0].click().run()
    assert not at.exception and at.success[0].value.startswith("Read 1 of 1 pages")
    assert [w.value for w in at.warning] == [sentence]
    at.sidebar.radio(key="view").set_value("history").run()
    assert not at.exception and [e.value for e in at.error] == [sentence]
    assert path.read_bytes() == garbage  # left as it was: other processes may have it open

    path.rename(data / "kept-aside.sqlite3")  # as the sentence says
    at = upload(start(), "mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.button[0].click().run()
    assert not at.exception and not at.warning
    at.sidebar.radio(key="view").set_value("history").run()
    assert not at.exception and not at.error
    assert [o.split(" · ")[1] for o in at.selectbox(key="history_run").options] == ["mixed.png"]  # kept anew
