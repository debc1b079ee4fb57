"""Reading in one call (/v1/ocr, /v1/chat), what runs here (/v1/models) and the API's own
documentation, through api.py as a real uvicorn process; dots.ocr answers through the
stand-in endpoint (tests/fixtures/openai_stub.py)."""

from __future__ import annotations

import threading

import pytest
import requests

from managers.availability import probe_host, why_not
from models.config import load_config
from tests.api_server import APIServer
from tests.fixtures.openai_stub import OpenAIStub
from tests.helpers import ENGLISH, encode, pdf_of_images, render_lines

TIMEOUT = 60
ANSWER = "The total due is 12,480.00 EUR."


@pytest.fixture
def stub():
    """A stand-in endpoint; its answers wait at ``gate`` while ``held`` is set."""
    held, gate = threading.Event(), threading.Event()

    def delay(_image) -> float:
        if held.is_set():
            gate.wait(TIMEOUT)
        return 0.0

    server = OpenAIStub(delay=delay, answer=lambda _image: ANSWER)
    server.held, server.gate = held, gate
    yield server
    gate.set()
    server.close()


def server(tmp_path, stub, **api) -> APIServer:
    return APIServer(tmp_path, models={"dots_ocr": {"vllm": {"endpoint": stub.url + "/v1"}}},
                     api={"ocr_max_pages": 1, **api})


@pytest.fixture
def api(tmp_path, stub):
    with server(tmp_path, stub) as started:
        yield started


def page() -> bytes:
    return encode(render_lines(ENGLISH), "PNG")


def test_ocr_answers_the_result_or_the_job_to_poll_and_refuses_what_it_cannot_do(api, stub):
    read = requests.post(api.url + "/v1/ocr", files={"files": ("a.png", page())},
                         data={"model": "tesseract", "format": "txt"}, timeout=TIMEOUT)
    assert read.status_code == 200 and read.text.startswith("Invoice number 4711")
    assert read.headers["content-type"].startswith("text/plain") and read.headers["x-job-id"]

    # A format it cannot answer is refused before anything is read.
    bad = requests.post(api.url + "/v1/ocr", files={"files": ("a.png", page())},
                        data={"model": "dots_ocr", "task": "ocr", "format": "odt"}, timeout=TIMEOUT)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_request"
    assert stub.requests == []

    too_long = requests.post(api.url + "/v1/ocr", files={"files": ("two.pdf", pdf_of_images([render_lines(ENGLISH)] * 2))},
                             data={"model": "tesseract"}, timeout=TIMEOUT)
    assert too_long.status_code == 413 and too_long.json()["error"] == {
        "code": "too_large", "message": "The request has 2 pages, over the limit of 1 page; send a page range "
                                        "(pages=1-1) or fewer files."}


def test_ocr_answers_the_job_to_poll_when_the_wait_ends(tmp_path, stub):
    """Still being read when api.ocr_wait_s ends (the page is held at the endpoint): 202 with
    the job, which then ends as any job; its box reaches the model as /v1/jobs's does."""
    stub.held.set()
    with server(tmp_path, stub, ocr_wait_s=0.1) as api:
        slow = requests.post(api.url + "/v1/ocr", files={"files": ("a.png", page())},
                             data={"model": "dots_ocr", "task": "grounding_ocr", "box": "100,140,900,210",
                                   "format": "md"}, timeout=TIMEOUT)
        assert slow.status_code == 202 and slow.json()["state"] in ("queued", "running")
        assert slow.headers["location"] == f"/v1/jobs/{slow.json()['id']}"
        stub.gate.set()
        with requests.get(api.url + slow.headers["location"] + "/events", stream=True, timeout=TIMEOUT) as answer:
            last = [line for line in answer.iter_lines(decode_unicode=True) if line.startswith("data:")][-1]
        assert '"state": "done"' in last
        assert requests.get(api.url + slow.headers["location"] + "/result", params={"format": "md"},
                            timeout=TIMEOUT).text == ANSWER


def test_chat_answers_through_the_endpoint_and_refuses_in_one_sentence(api, stub):
    asked = requests.post(api.url + "/v1/chat", files={"file": ("a.png", page())},
                          data={"model": "dots_ocr", "question": "What is the total?",
                                "history": '[["Whose invoice is it?", "Number 4711."]]'}, timeout=TIMEOUT)
    assert asked.status_code == 200, asked.text
    assert asked.json() == {"answer": ANSWER, "model": "dots_ocr"}
    sent = stub.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"][1]["text"] == "Whose invoice is it?" and sent[2]["content"] == "What is the total?"

    for form, status, message in [
        ({"model": "dots_ocr", "page": "3"}, 422, "Page 3 is outside the document's 1-1."),
        ({"model": "dots_ocr", "history": "not json"}, 422,
         "history must be a JSON list of [question, answer] pairs."),
        *[({"model": "dots_ocr", "history": history}, 422, "history must be a JSON list of [question, answer] pairs.")
          for history in ('["ab"]', '{"qa": 1}', '[["q", "a", "extra"]]', '[[{"q": 1}, "a"]]', '"qa"')],
        ({"model": "tesseract"}, 422, "Chat needs a vision-language model: read the page in vLLM or local mode."),
    ]:
        refused = requests.post(api.url + "/v1/chat", files={"file": ("a.png", page())},
                                data={"question": "What is the total?", **form}, timeout=TIMEOUT)
        assert (refused.status_code, refused.json()["error"]["message"]) == (status, message)

    stub.close()  # the endpoint is gone: one sentence, not a trace
    gone = requests.post(api.url + "/v1/chat", files={"file": ("a.png", page())},
                         data={"model": "dots_ocr", "question": "What is the total?"}, timeout=TIMEOUT)
    assert (gone.status_code, gone.json()["error"]) == (502, {
        "code": "engine_failed", "message": f"Cannot reach the model server at {stub.url} for the question; is it "
                                            "running?"})


def test_a_form_field_of_the_wrong_kind_is_refused_in_the_readers_language(api):
    """Pydantic's own reasons are English whatever the reader asked for; the API says what
    the field takes in its own sentence."""
    for lang, sentence in [("en", "The request's page must be a whole number, such as 1; it is 'x'."),
                           ("ru", "Поле запроса page должно быть целым числом, например 1; передано 'x'.")]:
        refused = requests.post(api.url + "/v1/chat", files={"file": ("a.png", page())},
                                headers={"Accept-Language": lang},
                                data={"model": "dots_ocr", "question": "What is it?", "page": "x"}, timeout=TIMEOUT)
        assert (refused.status_code, refused.json()["error"]) == (422, {"code": "invalid_request",
                                                                        "message": sentence})
    flag = requests.post(api.url + "/v1/jobs", files={"files": ("a.png", page())}, headers={"Accept-Language": "ru"},
                         data={"model": "tesseract", "hide_header_footer": "maybe"}, timeout=TIMEOUT)
    assert (flag.status_code, flag.json()["error"]["message"]) == (
        422, "Поле запроса hide_header_footer должно быть true или false; передано 'maybe'.")
    text = requests.post(api.url + "/v1/jobs", data={"model": "tesseract", "files": "not a file"},
                         headers={"Accept-Language": "ru"}, timeout=TIMEOUT)
    assert (text.status_code, text.json()["error"]["message"]) == (
        422, "Поле запроса files.0 не подходит; что оно принимает, описано в /docs.")


def test_models_say_what_runs_here_and_the_docs_describe_every_route_and_field(api, config):
    listed = requests.get(api.url + "/v1/models", headers={"Accept-Language": "ru"}, timeout=TIMEOUT).json()
    models = {m["key"]: m for m in listed["models"]}
    assert models.keys() == config.models.keys()
    assert listed["templates"] == list(config.templates)
    tesseract = models["tesseract"]
    assert tesseract["modes"] == [{"mode": "cpu", "label": "CPU", "available": True, "why_not": None}]
    assert tesseract["tasks"] == ["text", "fields"]
    assert "grounding_ocr" in models["dots_ocr"]["tasks"] and "fields" in models["dots_ocr"]["tasks"]
    # Each mode's reason is the sidebar's sentence for this machine and this config, in Russian.
    served = load_config(api.config_path)
    host = probe_host(served)
    for key, model in served.models.items():
        for mode in models[key]["modes"]:
            reason = why_not(model, mode["mode"], host, served)
            assert mode["why_not"] == (reason.render("ru") if reason else None)
            assert mode["available"] == (reason is None)
    assert [m["available"] for m in models["dots_ocr"]["modes"] if m["mode"] == "vllm"] == [True]  # the endpoint

    docs = requests.get(api.url + "/docs", timeout=TIMEOUT)
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    spec = requests.get(api.url + "/openapi.json", timeout=TIMEOUT).json()
    assert {"/health", "/v1/models", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result",
            "/v1/jobs/{job_id}/events", "/v1/ocr", "/v1/chat"} <= spec["paths"].keys()
    undocumented = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not operation.get("summary") or not operation.get("description"):
                undocumented.append(f"{method} {path}")
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and not parameter.get("description"):
                    undocumented.append(f"{method} {path} ?{parameter['name']}")
    for name, schema in spec["components"]["schemas"].items():
        if name.startswith("Body_"):  # a multipart form: every field says what it is
            undocumented += [f"{name}.{field}" for field, value in schema["properties"].items()
                             if not value.get("description")]
    assert undocumented == []
