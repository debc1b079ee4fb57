"""A job's result, its events and its box, through api.py as a real uvicorn process: Tesseract
on the CPU, and dots.ocr through the stand-in endpoint (tests/fixtures/openai_stub.py) where
a test must hold a page in flight."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import pymupdf
import pytest
import requests
from openpyxl import load_workbook

from models.render import PAGE_BREAK
from tests import fields_pages as docs
from tests.api_server import APIServer
from tests.fixtures.openai_stub import OpenAIStub, ink_lines
from tests.helpers import ENGLISH, MIXED, RUSSIAN, encode, render_lines
from tests.degrade import turned

TIMEOUT = 60


def png(lines: list[str]) -> bytes:
    return encode(render_lines(lines), "PNG")


def submit(api: APIServer, files: list[tuple[str, bytes]], **form) -> dict:
    answer = requests.post(api.url + "/v1/jobs", files=[("files", (name, data)) for name, data in files],
                           data=form, timeout=TIMEOUT)
    assert answer.status_code == 202, answer.text
    return answer.json()


def events(api: APIServer, job_id: str, last: int | None = None) -> list[tuple[int, str, dict]]:
    """The job's events as a streaming client reads them, until the server closes the stream."""
    headers = {"Last-Event-ID": str(last)} if last is not None else {}
    got, event = [], {}
    with requests.get(f"{api.url}/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=TIMEOUT) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines(decode_unicode=True):
            if not line:
                got.append((int(event["id"]), event["event"], json.loads(event["data"])))
                event = {}
                continue
            key, _sep, value = line.partition(": ")
            event[key] = value
    return got


def wait_done(api: APIServer, job_id: str) -> list[tuple[int, str, dict]]:
    seen = events(api, job_id)
    assert seen[-1][1] == "state" and seen[-1][2]["state"] in ("done", "failed", "cancelled"), seen
    return seen


def result(api: APIServer, job_id: str, fmt: str) -> requests.Response:
    return requests.get(f"{api.url}/v1/jobs/{job_id}/result", params={"format": fmt}, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with APIServer(tmp_path_factory.mktemp("api")) as server:
        yield server


@pytest.fixture
def stub():
    """A stand-in dots.ocr endpoint; a page for which ``hold`` (a function of the image it is
    sent) is true waits at ``gate``, so a test can act while that page is in flight."""
    gate = threading.Event()

    def delay(image) -> float:
        if server.hold is not None and server.hold(image):
            gate.wait(TIMEOUT)
        return 0.0

    server = OpenAIStub(delay=delay)
    server.hold, server.gate = None, gate
    yield server
    gate.set()
    server.close()


@pytest.fixture
def stub_api(tmp_path, stub):
    with APIServer(tmp_path, models={"dots_ocr": {"vllm": {"endpoint": stub.url + "/v1"}}}) as server:
        yield server


def test_events_stream_every_step_then_close_and_resume_after_last_event_id(api):
    job = submit(api, [("a.png", png(ENGLISH)), ("b.png", png(RUSSIAN))], model="tesseract")
    seen = events(api, job["id"])
    kinds = [(kind, data.get("state")) for _seq, kind, data in seen]
    assert kinds == [("state", "queued"), ("state", "running"), ("page", None), ("page", None), ("state", "done")]
    pages = [data for _seq, kind, data in seen if kind == "page"]
    assert [(p["document"], p["page"], p["pages_done"], p["pages_total"]) for p in pages] == [(0, 1, 1, 2),
                                                                                            (1, 1, 2, 2)]
    assert seen[-1][2]["state_text"] == "done"

    after_first_page = seen[2][0]
    assert events(api, job["id"], last=after_first_page) == seen[3:]

    unknown = requests.get(f"{api.url}/v1/jobs/{'0' * 32}/events", stream=True, timeout=TIMEOUT)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"
    assert unknown.json()["error"]["code"] == "no_such_job"


@pytest.mark.parametrize("last", ["abc", "1e3", "-1", "99999999999999999999999"])
def test_a_last_event_id_that_is_no_event_id_is_refused_in_one_sentence(api, last):
    job = submit(api, [("a.png", png(ENGLISH))], model="tesseract")
    answer = requests.get(f"{api.url}/v1/jobs/{job['id']}/events",
                          headers={"Last-Event-ID": last, "Accept-Language": "ru"}, timeout=TIMEOUT)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and last in error["message"], error
    assert "Last-Event-ID" in error["message"] and "\n" not in error["message"]
    assert any("а" <= char <= "я" for char in error["message"]), error  # in Accept-Language


def test_several_documents_give_text_joined_and_files_zipped(api):
    job = submit(api, [("a.png", png(ENGLISH)), ("b.png", png(RUSSIAN))], model="tesseract")
    wait_done(api, job["id"])

    txt = result(api, job["id"], "txt")
    assert txt.status_code == 200 and txt.headers["x-job-state"] == "done"
    first, second = txt.text.split(PAGE_BREAK)
    assert "quick brown fox" in first and "французских" in second
    listed = result(api, job["id"], "json").json()
    assert [len(document["pages"]) for document in listed] == [1, 1]
    assert "\n\n---\n\n" in result(api, job["id"], "md").text

    pdfs = result(api, job["id"], "pdf")
    assert pdfs.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(pdfs.content))
    assert sorted(archive.namelist()) == ["a.pdf", "b.pdf"]
    assert "quick brown fox" in pymupdf.open(stream=archive.read("a.pdf")).load_page(0).get_text()

    for fmt in ("docx", "xlsx"):
        assert sorted(zipfile.ZipFile(io.BytesIO(result(api, job["id"], fmt).content)).namelist()) == [
            f"a.{fmt}", f"b.{fmt}"]

    # None of the documents has a table: no empty ZIP, one sentence instead.
    csv = result(api, job["id"], "csv")
    assert csv.status_code == 409 and csv.json()["error"]["code"] == "nothing_to_export"
    assert csv.json()["error"]["message"].count(".") == 1


def test_an_uploads_folders_stay_out_of_the_names_it_is_kept_and_downloaded_under(api):
    """A client may send a file's whole path (old browsers on Windows did): only its last
    part names the document, so no ZIP entry of a download climbs out of the folder it is
    unpacked into, with either separator."""
    job = submit(api, [("..\\..\\Startup\\a.png", png(ENGLISH)), ("../../etc/b.png", png(RUSSIAN))],
                 model="tesseract")
    assert [document["name"] for document in job["documents"]] == ["a.png", "b.png"]
    wait_done(api, job["id"])
    assert sorted(zipfile.ZipFile(io.BytesIO(result(api, job["id"], "docx").content)).namelist()) == [
        "a.docx", "b.docx"]


def test_a_fields_job_gives_the_sheet_and_lists_its_fields_in_text(api):
    invoice = encode(docs.INVOICE.images()[0], "PNG")
    job = submit(api, [("invoice.png", invoice), ("again.png", invoice)], model="tesseract", task="fields",
                 template="invoice")
    wait_done(api, job["id"])

    book = load_workbook(io.BytesIO(result(api, job["id"], "xlsx").content))
    rows = list(book.active.iter_rows(values_only=True))
    assert [row[0] for row in rows[1:]] == ["invoice.png", "again.png"]  # a row per document: the sheet
    csv = result(api, job["id"], "csv")
    assert "filename*=UTF-8''fields.csv" in csv.headers["content-disposition"]
    assert docs.INVOICE.truth["supplier_inn"] in csv.content.decode("utf-8-sig")

    # txt and md: each document's fields as cli.py ocr --task fields prints them, then its text.
    read = result(api, job["id"], "json").json()
    assert [document["template"] for document in read] == ["invoice", "invoice"]
    md = result(api, job["id"], "md").text
    assert md.startswith("# Invoice for payment\n") and md.count("# Invoice for payment\n") == 2
    assert "| Field | Value | Check |" in md
    txt = result(api, job["id"], "txt").text
    assert txt.startswith("Invoice for payment\n")
    inn_row = next(line for line in txt.splitlines() if line.startswith("Supplier's INN"))
    assert docs.INVOICE.truth["supplier_inn"] in inn_row and "valid" in inn_row


def test_a_cancelled_job_gives_the_pages_it_read_drawn_on_the_pages_as_read(stub, stub_api):
    """Two documents; the first's first page is sideways, so preparation turns it before the
    model sees it. Its second page waits at the stub while the job is cancelled: the result is
    the one page read, and the PDF draws it on the page as it was read, kept with that page."""
    upright = render_lines(MIXED)
    frames = [turned(upright, 90), render_lines(RUSSIAN)]
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    stub.hold = lambda image: len(ink_lines(image)) != len(MIXED)  # every page but the sideways one
    job = submit(stub_api, [("a.tiff", tiff.getvalue()), ("b.png", png(ENGLISH))], model="dots_ocr",
                 task="layout_all")
    with requests.get(f"{stub_api.url}/v1/jobs/{job['id']}/events", stream=True, timeout=TIMEOUT) as answer:
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("event: page"):
                break
    queued = submit(stub_api, [("c.png", png(ENGLISH))], model="dots_ocr", task="layout_all")
    assert requests.delete(f"{stub_api.url}/v1/jobs/{job['id']}", timeout=TIMEOUT).json()["state"] == "cancelled"
    assert requests.delete(f"{stub_api.url}/v1/jobs/{queued['id']}", timeout=TIMEOUT).json()["state"] == "cancelled"
    stub.gate.set()

    made = result(stub_api, job["id"], "pdf")
    assert made.status_code == 200 and made.headers["x-job-state"] == "cancelled"
    assert made.headers["content-type"] == "application/pdf"  # the one document read, not a ZIP
    pdf = pymupdf.open(stream=made.content)
    assert pdf.page_count == 1
    (xref, *_rest), = pdf.load_page(0).get_images()
    shown = pdf.extract_image(xref)
    assert (shown["width"], shown["height"]) == upright.size  # the page as read, not the sideways frame
    read = result(stub_api, job["id"], "json").json()
    assert [page["index"] for page in read["pages"]] == [0] and "turned 90°" in read["pages"][0]["warnings"][0]
    txt = result(stub_api, job["id"], "txt").text
    assert txt.startswith("line 1") and PAGE_BREAK not in txt

    nothing = result(stub_api, queued["id"], "txt")  # cancelled before a page was read
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "nothing_to_export"


def test_a_grounding_task_needs_its_box_and_reads_it(stub, stub_api):
    page = png(ENGLISH)
    refused = requests.post(stub_api.url + "/v1/jobs", files={"files": ("a.png", page)},
                            data={"model": "dots_ocr", "task": "grounding_ocr"}, timeout=TIMEOUT)
    assert refused.status_code == 422 and refused.json()["error"] == {
        "code": "invalid_request", "message": "The task grounding_ocr reads the text inside a box; send "
                                             "box=x1,y1,x2,y2 in the page's pixels."}
    for form, word in [({"task": "grounding_ocr", "box": "10,10,5,40"}, "x2 right of x1"),
                       ({"task": "layout_all", "box": "1,2,3,4"}, "reads the whole page")]:
        bad = requests.post(stub_api.url + "/v1/jobs", files={"files": ("a.png", page)},
                            data={"model": "dots_ocr", **form}, timeout=TIMEOUT)
        assert bad.status_code == 422 and word in bad.json()["error"]["message"]

    job = submit(stub_api, [("a.png", page)], model="dots_ocr", task="grounding_ocr", box="100,140,900,210")
    assert wait_done(stub_api, job["id"])[-1][2]["state"] == "done"
    assert requests.get(f"{stub_api.url}/v1/jobs/{job['id']}", timeout=TIMEOUT).json()["page_errors"] == []
    prompt = next(part["text"] for part in stub.requests[-1]["messages"][0]["content"] if part["type"] == "text")
    assert prompt.startswith("Extract text from the given bounding box") and prompt.rstrip().endswith("]")


def test_one_document_gives_its_file_drawn_on_the_page_as_preparation_turned_it(api):
    upright = render_lines(ENGLISH)
    sideways = turned(upright, 90)  # a landscape scan of a portrait page: preparation turns it back
    job = submit(api, [("sideways.png", encode(sideways, "PNG"))], model="tesseract")
    wait_done(api, job["id"])
    page = result(api, job["id"], "json").json()["pages"][0]
    assert (page["width"], page["height"]) == upright.size

    made = result(api, job["id"], "pdf")
    assert made.headers["content-type"] == "application/pdf"  # one document: its own file
    assert "filename*=UTF-8''sideways.pdf" in made.headers["content-disposition"]
    pdf = pymupdf.open(stream=made.content)
    (xref, *_rest), = pdf.load_page(0).get_images()
    shown = pdf.extract_image(xref)
    assert (shown["width"], shown["height"]) == upright.size  # the prepared page, not the sideways file
    assert "quick brown fox" in pdf.load_page(0).get_text()

    csv = result(api, job["id"], "csv")
    assert csv.status_code == 409 and csv.json()["error"] == {
        "code": "nothing_to_export", "message": "No tables were found, so no CSV was written."}
    unknown = result(api, job["id"], "odt")
    assert unknown.status_code == 422 and "txt, md, json, csv" in unknown.json()["error"]["message"]
