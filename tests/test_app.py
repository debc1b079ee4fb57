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


# --- the fields task ------------------------------------------------------------------------

TEMPLATES_EN = ["Tender notice", "Invoice for payment", "Contract", "Act of completed works"]
TEMPLATES_RU = ["Извещение о закупке", "Счёт на оплату", "Договор (контракт)", "Акт выполненных работ"]


def test_every_model_offers_the_fields_task_and_a_template_picker(config):
    from managers.availability import models_for_mode

    at = upload(start(), "page.png", encode(render_lines(ENGLISH[:1], size=(1000, 200)), "PNG"), "image/png")
    for mode in ("cpu", "vllm", "local"):
        at.sidebar.radio(key="mode").set_value(mode).run()
        for key in models_for_mode(config, mode):
            at.sidebar.selectbox(key=f"model_{mode}").set_value(key).run()
            assert at.selectbox(key=f"task_{key}").options[-1] == "Fields", (mode, key)
    at.sidebar.radio(key="mode").set_value("cpu").run()
    at.selectbox(key="task_tesseract").set_value("fields").run()
    assert at.selectbox(key="template").options == TEMPLATES_EN
    assert not at.checkbox  # a layout task's setting is not the fields task's
    at.sidebar.selectbox(key="language").set_value("ru").run()
    assert at.selectbox(key="task_tesseract").value == "fields"
    assert at.selectbox(key="task_tesseract").format_func("fields") == "Поля"
    assert at.selectbox(key="template").options == TEMPLATES_RU
    assert not at.button[0].disabled and not at.exception


def test_fields_read_in_the_app_are_corrected_and_the_correction_kept(config):
    """Run with the fields task and a template: a table of the template's fields beside the
    page; a value typed in it is checked at once and kept with the run in the history."""
    from managers.history import History

    at = upload(start(), "tender.png", encode(render_lines(["ИНН 7707083893"]), "PNG"), "image/png")
    at.selectbox(key="task_tesseract").set_value("fields").run()
    at.selectbox(key="template").set_value("invoice").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert [tab.label for tab in at.tabs] == ["Fields", "Text", "Markdown", "Layout", "JSON", "Chat"]
    labels = [local.render("en") for local in (f.label for f in config.template("invoice").fields)]
    editor = at.data_editor[0]
    assert editor.value["field"].tolist() == labels
    assert len(at.tabs[0].image) == 1  # the page beside the table
    row = labels.index("Supplier's INN")
    at.session_state[editor.key] = {"edited_rows": {row: {"value": "7707083894"}}, "added_rows": [],
                                    "deleted_rows": []}
    at.run()
    assert not at.exception
    shown = at.data_editor[0].value.iloc[row]
    assert (shown["value"], shown["status"]) == ("7707083894", "invalid: the INN's check digits do not match")

    stored = History(config).get(History(config).list()[0].id).result
    kept = next(f for f in stored.fields if f.name == "supplier_inn")
    assert (kept.value, kept.status, kept.corrected) == ("7707083894", "invalid", True)


def open_kept_run(config):
    """The app on the History view with TENDER's fields run kept; its id."""
    from managers.history import History
    from tests.helpers import tender_run

    run, document = tender_run()
    run_id = History(config).add(run, "tender.pdf", document)
    at = start()
    at.sidebar.radio(key="view").set_value("history").run()
    assert not at.exception
    return at, run_id


def row(at: AppTest, label: str) -> list[str]:
    table = at.data_editor[0].value
    return table[table["field"] == label].iloc[0].tolist()


def test_a_kept_fields_run_shows_each_status_and_keeps_its_corrections(config):
    from managers.history import History

    at, run_id = open_kept_run(config)
    assert at.tabs[0].label == "Fields"
    assert row(at, "Customer's INN") == ["Customer's INN", "7707083893", "valid", "1", ""]
    assert row(at, "Customer's KPP") == [
        "Customer's KPP", "77360100", "invalid: a KPP has 9 characters: 4 digits, 2 digits or letters, 3 digits",
        "1", ""]
    assert row(at, "Initial maximum price (НМЦК)") == [
        "Initial maximum price (НМЦК)", "", "conflict: 2 different values on pages 1, 2", "1", ""]
    assert row(at, "Customer") == ["Customer", "", "missing: required, and found on no page", "", ""]
    # The boxes of the four values read on page 1 (the price's first one among them).
    assert at.tabs[0].image[0].captions == ["4 values on this page"]

    table = at.data_editor[0].value
    kpp = table["field"].tolist().index("Customer's KPP")
    at.session_state[at.data_editor[0].key] = {"edited_rows": {kpp: {"value": "773601001"}}, "added_rows": [],
                                               "deleted_rows": []}
    at.run()
    assert row(at, "Customer's KPP") == ["Customer's KPP", "773601001", "valid", "", "77360100"]

    conflict = next(s for s in at.selectbox if s.label.startswith("Initial maximum price (НМЦК): the pages"))
    assert conflict.options == ["1 250 000,00 руб. (page 1)", "1 350 000,00 руб. (page 2)"]
    conflict.set_value("1 350 000,00 руб.").run()
    assert row(at, "Initial maximum price (НМЦК)") == [
        "Initial maximum price (НМЦК)", "1 350 000,00 руб.", "valid", "", "1 250 000,00 руб. | 1 350 000,00 руб."]
    assert not any(s.label.startswith("Initial maximum price") for s in at.selectbox)

    fields = {f.name: f for f in History(config).get(run_id).result.fields}
    assert (fields["customer_kpp"].value, fields["customer_kpp"].corrected) == ("773601001", True)
    assert (fields["initial_price"].status, fields["initial_price"].normalized) == ("valid", "1350000.00")
    again = start()  # another session reopens the run: the corrections are there
    again.sidebar.radio(key="view").set_value("history").run()
    assert row(again, "Customer's KPP") == ["Customer's KPP", "773601001", "valid", "", "77360100"]
    again.sidebar.selectbox(key="language").set_value("ru").run()
    assert row(again, "КПП заказчика") == ["КПП заказчика", "773601001", "верно", "", "77360100"]
    assert row(again, "ОГРН заказчика")[2] == "отсутствует: не найдено ни на одной странице"


def edit(at: AppTest, label: str, value: str) -> None:
    """Type ``value`` as the field ``label``'s value in the fields table, as a person does."""
    editor = at.data_editor[0]
    at.session_state[editor.key] = {"edited_rows": {editor.value["field"].tolist().index(label): {"value": value}},
                                    "added_rows": [], "deleted_rows": []}
    at.run()


def test_two_sessions_correcting_one_run_lose_neither_correction(config):
    """Session B read a page and still has its run on screen; session A reopens that run from
    the history and corrects the INN. B's correction of the KPP keeps A's INN, and B's table
    shows the run as it is kept now, A's correction included."""
    from managers.history import History

    second = start()
    second.file_uploader[0].upload("notice.png", encode(render_lines(["ИНН 7707083893"]), "PNG"), "image/png")
    second.run()
    second.selectbox(key="task_tesseract").set_value("fields").run()
    second.button[0].click().run()
    assert row(second, "Customer's INN")[1:3] == ["7707083893", "valid"]
    first = start()
    first.sidebar.radio(key="view").set_value("history").run()
    edit(first, "Customer's INN", "7707083894")
    edit(second, "Customer's KPP", "773601001")
    assert row(second, "Customer's INN") == ["Customer's INN", "7707083894", "invalid: the INN's check digits "
                                             "do not match", "", "7707083893"]
    fields = {f.name: f for f in History(config).get(History(config).list()[0].id).result.fields}
    assert (fields["customer_inn"].value, fields["customer_inn"].original) == ("7707083894", "7707083893")
    assert (fields["customer_kpp"].value, fields["customer_kpp"].corrected) == ("773601001", True)


def test_one_document_read_or_reopened_downloads_as_its_sheet(config):
    at = start()
    at.file_uploader[0].upload("notice.png", encode(render_lines(["ИНН 7707083893"]), "PNG"), "image/png")
    at.run()
    at.selectbox(key="task_tesseract").set_value("fields").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    sheets = {"Fields .xlsx", "Fields .csv", "Fields .json"}
    assert sheets <= {b.proto.label for b in at.get("download_button")}
    reopened, _run_id = open_kept_run(config)
    assert sheets <= {b.proto.label for b in reopened.get("download_button")}


def test_several_documents_read_for_fields_make_one_sheet():
    at = start()
    at.file_uploader[0].upload("first.png", encode(render_lines(["ИНН 7707083893"]), "PNG"), "image/png")
    at.file_uploader[0].upload("second.png", encode(render_lines(["КПП 773601001"]), "PNG"), "image/png")
    at.run()
    at.selectbox(key="task_tesseract").set_value("fields").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.subheader[0].value == "Tender notice: 2 documents"
    sheet = at.dataframe[-1].value
    assert sheet["Document"].tolist() == ["first.png", "second.png"]  # the sheet: a row per document
    # Tesseract's rules found each document's identifier, checked.
    assert sheet["Customer's INN"].tolist()[0] == "7707083893"
    assert sheet["Customer's INN: check"].tolist()[0] == "valid"
    assert sheet["Customer's KPP: check"].tolist() == ["missing: found on no page", "valid"]
    labels = {b.proto.label for b in at.get("download_button")}
    assert {"Sheet .xlsx", "Sheet .csv", "Sheet .json"} <= labels
    # A correction shows in the sheet at once.
    editor = at.data_editor[0]
    inn = editor.value["field"].tolist().index("Customer's INN")
    at.session_state[editor.key] = {"edited_rows": {inn: {"value": "7707083893"}}, "added_rows": [],
                                    "deleted_rows": []}
    at.run()
    assert any("7707083893" in cells for cells in at.dataframe[-1].value.astype(str).values.tolist())


def test_each_value_read_is_boxed_on_its_page_in_its_status_colour():
    from models import render
    from tests.helpers import TENDER, line_boxes, tender_run
    from views.fields import COLOURS, marks

    fields = tender_run()[0].result.fields
    first, second = line_boxes(TENDER[0]), line_boxes(TENDER[1])
    valid, invalid, conflict = COLOURS["valid"], COLOURS["invalid"], COLOURS["conflict"]
    # Numbered as the table's rows: notice 1, INN 3, KPP 4, price 7 (its two values, one a page).
    assert marks(fields, 0) == [("1", first[0], valid), ("3", first[1], valid), ("4", first[2], invalid),
                                ("7", first[3], conflict)]
    assert marks(fields, 1) == [("7", second[1], conflict)]
    drawn = render.marked(render_lines(TENDER[0]), marks(fields, 0))
    x1, y1, x2, y2 = first[2]
    assert drawn.getpixel(((x1 + x2) // 2, y2)) == invalid  # the KPP's box, on its bottom edge
