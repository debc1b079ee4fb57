"""The API's limits through api.py as a real uvicorn process: an upload past
api.max_upload_mb or a job past api.max_pages (413), a full queue and a key's share of it
(429 with Retry-After), a bad file (400) — each refused in one sentence with its code, in
the client's language, with nothing kept. Tesseract reads; the stand-in endpoint
(tests/fixtures/openai_stub.py) holds pages in flight where a job must stay running."""

from __future__ import annotations

import os
import threading

import pymupdf
import pytest
import requests

from managers.api_keys import APIKeys
from tests.api_calls import (TIMEOUT, bearer, post, raw_answer, refusal, small_page, stored_jobs, text,
                             wait_for)
from tests.api_server import APIServer
from tests.fixtures.openai_stub import OpenAIStub
from tests.helpers import ENGLISH, RUSSIAN

MB = 2**20
RETRY_AFTER = 7
KEYS = ("alpha", "beta", "gamma", "delta")


class HeldStub(OpenAIStub):
    """The stand-in endpoint; while ``held`` every page waits until ``release``."""

    def __init__(self):
        self.held, self.gate = threading.Event(), threading.Event()
        super().__init__(delay=self._wait)

    def _wait(self, _image) -> float:
        if self.held.is_set():
            self.gate.wait(TIMEOUT)
        return 0.0

    def hold(self) -> None:
        self.gate.clear()
        self.held.set()

    def release(self) -> None:
        self.held.clear()
        self.gate.set()


@pytest.fixture(scope="module")
def stub():
    server = HeldStub()
    yield server
    server.release()
    server.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory, stub):
    root = tmp_path_factory.mktemp("limits")
    # Qwen3-VL's endpoint needs a key that this machine lacks: it cannot run here.
    with APIServer(root, models={"dots_ocr": {"vllm": {"endpoint": stub.url + "/v1"}},
                                 "qwen3_vl_2b": {"vllm": {"endpoint": stub.url + "/v1",
                                                          "api_key_env": "CHATVLMLLM_TEST_UNSET_KEY"}}},
                   api={"max_upload_mb": 1, "max_pages": 3, "per_key_jobs": 2, "retry_after_s": RETRY_AFTER},
                   jobs={"queue_size": 4}) as server:
        server.keys = {name: APIKeys(server.data_dir).create(name) for name in KEYS}
        yield server


def test_an_upload_past_the_limit_is_refused_before_it_is_read_and_nothing_is_kept(api):
    key, before = api.keys["alpha"], stored_jobs(api.data_dir)
    big = post(api, [("scan.png", os.urandom(3 * MB))], key, model="tesseract")
    assert refusal(big, 413, "too_large") == ("The upload is 3.0 MB, over the API's 1 MB limit (api.max_upload_mb); "
                                              "send fewer or smaller files.")
    # Just past the limit (the body is within the form's slack): intake counts the files.
    two = post(api, [("a.png", os.urandom(MB // 2)), ("b.png", os.urandom(MB))], key, model="tesseract",
               headers={"Accept-Language": "ru;q=0.9, en;q=0.5"})
    assert refusal(two, 413, "too_large") == ("Загрузка весит 1,5 МБ, больше предела API в 1 МБ (api.max_upload_mb); "
                                              "отправьте меньше файлов или файлы поменьше.")
    chat = requests.post(api.url + "/v1/chat", files={"file": ("a.png", os.urandom(MB + MB // 2))},
                         data={"model": "dots_ocr", "question": "What is it?"}, headers=bearer(key), timeout=TIMEOUT)
    assert refusal(chat, 413, "too_large").startswith("The upload is 1.5 MB")

    # A declared length past the limit is answered before the body comes: 64 KB of 100 MB sent.
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {100 * MB}\r\n\r\n").encode()
    status, body = raw_answer(api.port, head, [b"x" * 65536])
    assert status.startswith("HTTP/1.1 413 ") and body["error"]["code"] == "too_large"
    # A body of unknown length (chunked) is cut as soon as it passes the limit, never finished here.
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"10000\r\n" + b"y" * 65536 + b"\r\n"] * 40  # 2.5 MB
    status, body = raw_answer(api.port, head, chunks)
    assert status.startswith("HTTP/1.1 413 ") and body["error"] == {
        "code": "too_large", "message": "The upload is over the API's 1 MB limit (api.max_upload_mb); send fewer or "
                                        "smaller files."}
    assert stored_jobs(api.data_dir) == before


def test_a_job_past_the_page_limit_is_refused_and_a_page_range_gets_it_in(api):
    key, before = api.keys["alpha"], stored_jobs(api.data_dir)
    pages = [f"Page {n} of the tender" for n in range(1, 5)]
    four = text_pdf(pages)
    refused = post(api, [("tender.pdf", four)], key, model="tesseract")
    assert refusal(refused, 413, "too_large") == ("The request has 4 pages, over the limit of 3 pages; send a page "
                                                  "range (pages=1-3) or fewer files.")
    assert refusal(post(api, [("a.pdf", text_pdf(pages[:2])), ("b.pdf", text_pdf(pages[:2]))], key,
                        model="tesseract"), 413, "too_large").startswith("The request has 4 pages")
    assert stored_jobs(api.data_dir) == before
    accepted = post(api, [("tender.pdf", four)], key, model="tesseract", pages="2-4")
    assert accepted.status_code == 202 and accepted.json()["pages_total"] == 3
    assert wait_for(api, accepted.json()["id"], key=key)["state"] == "done"
    assert "Page 4 of the tender" in text(api, accepted.json()["id"], key)


def text_pdf(lines: list[str]) -> bytes:
    """A small PDF, a line of text on each page (Helvetica, not embedded)."""
    document = pymupdf.open()
    for line in lines:
        document.new_page(width=420, height=200).insert_text((40, 100), line, fontsize=14)
    return document.tobytes()


def encrypted_pdf() -> bytes:
    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "Confidential")
    return document.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="user")


def test_a_bad_file_is_refused_in_one_sentence_and_no_job_is_kept(api):
    key, before = api.keys["alpha"], stored_jobs(api.data_dir)
    good = small_page(ENGLISH)
    for name, data, sentence in [
        ("scan.png", good[:300], "'scan.png' is truncated or damaged (image file is truncated); export it again and "
                                 "upload the new file."),
        ("empty.png", b"", "'empty.png' is empty (0 bytes); choose the file again."),
        ("notes.pdf", b"Minutes of the meeting\n" * 20, "'notes.pdf' is not a PDF file: it holds text."),
        ("locked.pdf", encrypted_pdf(), "'locked.pdf' is password-protected; remove the password (e.g. print it to a "
                                        "new PDF) and upload it again."),
    ]:
        alone = post(api, [(name, data)], key, model="tesseract")
        assert refusal(alone, 400, "bad_document") == sentence
        # Beside a good file the request is still refused whole: no job with half its documents.
        assert refusal(post(api, [("good.png", good), (name, data)], key, model="tesseract"), 400,
                       "bad_document") == sentence
        assert refusal(post(api, [(name, data)], key, route="/v1/ocr", model="tesseract"), 400,
                       "bad_document") == sentence
    assert stored_jobs(api.data_dir) == before


def test_a_model_that_cannot_run_here_is_refused_at_once_and_no_job_is_kept(api):
    """As GET /v1/models says it: not accepted now to fail later."""
    key, before = api.keys["alpha"], stored_jobs(api.data_dir)
    sentence = ("Qwen3-VL 2B Instruct cannot run in vLLM on this machine: the endpoint's API key is not set — export "
                "CHATVLMLLM_TEST_UNSET_KEY=….")
    for route in ("/v1/jobs", "/v1/ocr"):
        answer = post(api, [("a.png", small_page(ENGLISH))], key, route=route, model="qwen3_vl_2b", mode="vllm")
        assert refusal(answer, 503, "not_available") == sentence
    assert stored_jobs(api.data_dir) == before


def test_a_full_queue_and_a_keys_share_of_it_answer_429_with_retry_after(api, stub):
    """queue_size 4, per_key_jobs 2: alpha's first job holds the worker at the endpoint, its
    second waits; alpha is at its limit for jobs, /v1/ocr and chats alike while beta and gamma
    still get in, beta's chat counting as one of its two; then the queue is full for everyone."""
    keys, page = api.keys, small_page(ENGLISH)
    stub.hold()
    try:
        first = post(api, [("a.png", page)], keys["alpha"], model="dots_ocr").json()
        wait_for(api, first["id"], ("running",), keys["alpha"])
        second = post(api, [("b.png", page)], keys["alpha"], model="dots_ocr")
        assert second.status_code == 202
        mine = "This API key has 2 jobs and chats unfinished, its limit (api.per_key_jobs); wait for one to end."
        for route, form in [("/v1/jobs", {"model": "tesseract"}), ("/v1/ocr", {"model": "tesseract"})]:
            over = post(api, [("c.png", page)], keys["alpha"], route=route, **form)
            assert refusal(over, 429, "busy") == mine and over.headers["retry-after"] == str(RETRY_AFTER)
        chat = requests.post(api.url + "/v1/chat", files={"file": ("c.png", page)}, headers=bearer(keys["alpha"]),
                             data={"model": "dots_ocr", "question": "What is it?"}, timeout=TIMEOUT)
        assert refusal(chat, 429, "busy") == mine

        # beta: a chat in flight (held at the endpoint) and one job fill its two places.
        chatted = {}
        asking = threading.Thread(target=lambda: chatted.update(answer=requests.post(
            api.url + "/v1/chat", files={"file": ("d.png", page)}, headers=bearer(keys["beta"]),
            data={"model": "dots_ocr", "question": "What is it?"}, timeout=TIMEOUT)))
        asking.start()
        while stub.in_flight < 2:
            assert asking.is_alive(), chatted
            stub.gate.wait(0.05)
        third = post(api, [("d.png", page)], keys["beta"], model="tesseract")
        assert third.status_code == 202, third.text
        assert refusal(post(api, [("e.png", page)], keys["beta"], model="tesseract"), 429, "busy") == mine

        fourth = post(api, [("f.png", page)], keys["gamma"], model="tesseract")
        assert fourth.status_code == 202, fourth.text

        # Four unfinished jobs: the queue is full, for a key with none too.
        full = post(api, [("g.png", page)], keys["delta"], model="tesseract")
        assert refusal(full, 429, "busy") == "The job queue is full (4 jobs unfinished); try again in a while."
        assert full.headers["retry-after"] == str(RETRY_AFTER)
        russian = post(api, [("g.png", page)], keys["delta"], model="tesseract", headers={"Accept-Language": "ru"})
        assert refusal(russian, 429, "busy") == ("Очередь заданий заполнена (4 незавершённых задания); повторите "
                                                 "позже.")
    finally:
        stub.release()
    asking.join(TIMEOUT)
    assert chatted["answer"].status_code == 200
    for job_id, key in [(first["id"], "alpha"), (second.json()["id"], "alpha"), (third.json()["id"], "beta"),
                        (fourth.json()["id"], "gamma")]:
        assert wait_for(api, job_id, key=keys[key])["state"] == "done"
    # Places come back as jobs end.
    again = post(api, [("g.png", small_page(RUSSIAN))], keys["alpha"], model="tesseract")
    assert again.status_code == 202 and wait_for(api, again.json()["id"], key=keys["alpha"])["state"] == "done"
