"""Twenty clients submit at once, each with its own key and its own document, through api.py
as a real uvicorn process — read by Tesseract, and by dots.ocr through the stand-in endpoint
(tests/fixtures/openai_stub.py). Every job is accepted (the limits are above twenty), every
one ends done with its own document's text; none is lost and none is read twice."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import requests
from PIL import Image, ImageDraw

from managers.api_keys import APIKeys
from tests.api_calls import TIMEOUT, bearer, post, text, wait_for
from tests.api_server import APIServer
from tests.fixtures.openai_stub import OpenAIStub, ink_lines
from tests.helpers import encode, render_lines

CLIENTS = 20


@pytest.fixture(scope="module")
def stub():
    seen: Counter[int] = Counter()  # pages sent, by their number of bars

    def count(image) -> float:
        with lock:
            seen[len(ink_lines(image))] += 1
        return 0.0

    lock = threading.Lock()
    server = OpenAIStub(delay=count)
    server.seen = seen
    yield server
    server.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory, stub):
    with APIServer(tmp_path_factory.mktemp("clients"), models={"dots_ocr": {"vllm": {"endpoint": stub.url + "/v1"}}},
                   jobs={"queue_size": 2 * CLIENTS}, api={"per_key_jobs": 1}) as server:
        server.keys = [APIKeys(server.data_dir).create(f"client-{n:02d}") for n in range(CLIENTS)]
        yield server


def bars(n: int) -> bytes:
    """A page of ``n`` black bars: the stand-in endpoint answers a "line k" cell for each."""
    page = Image.new("RGB", (560, 1120), "white")
    draw = ImageDraw.Draw(page)
    for k in range(n):
        draw.rectangle((40, 30 + 52 * k, 500, 50 + 52 * k), fill="black")
    return encode(page, "PNG")


def all_at_once(api: APIServer, documents: list[bytes], model: str) -> list[str]:
    """Each client submits its document at the same moment; the job ids, by client."""
    start, answers = threading.Barrier(CLIENTS), [None] * CLIENTS

    def client(n: int) -> None:
        start.wait(TIMEOUT)
        answers[n] = post(api, [(f"client-{n:02d}.png", documents[n])], api.keys[n], model=model)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert [answer.status_code for answer in answers] == [202] * CLIENTS, [a.text for a in answers if a.status_code != 202]
    ids = [answer.json()["id"] for answer in answers]
    assert len(set(ids)) == CLIENTS
    return ids


def read_once(api: APIServer, job_id: str, key: str) -> None:
    """The job ended done with its one page read once: one running state, one page event."""
    shown = wait_for(api, job_id, key=key)
    assert (shown["state"], shown["pages_done"], shown["interruptions"]) == ("done", 1, 0), shown
    with requests.get(f"{api.url}/v1/jobs/{job_id}/events", headers=bearer(key), stream=True, timeout=TIMEOUT) as seen:
        kinds = Counter(line for line in seen.iter_lines(decode_unicode=True) if line.startswith("event:"))
    assert kinds == {"event: state": 3, "event: page": 1}


def test_twenty_clients_at_once_read_by_tesseract_each_get_their_own_text(api):
    lines = [f"Client {n} orders {n + 100} chairs" for n in range(CLIENTS)]
    ids = all_at_once(api, [encode(render_lines([line], size=(1000, 140), top=40), "PNG") for line in lines],
                      "tesseract")
    for n, job_id in enumerate(ids):
        read_once(api, job_id, api.keys[n])
        assert text(api, job_id, api.keys[n]).strip() == lines[n]


def test_twenty_clients_at_once_read_through_an_endpoint_each_get_their_own_page(api, stub):
    ids = all_at_once(api, [bars(n + 1) for n in range(CLIENTS)], "dots_ocr")
    for n, job_id in enumerate(ids):
        read_once(api, job_id, api.keys[n])
        cells = requests.get(f"{api.url}/v1/jobs/{job_id}/result", headers=bearer(api.keys[n]),
                             timeout=TIMEOUT).json()["pages"][0]["blocks"]
        assert [cell["text"] for cell in cells] == [f"line {k}" for k in range(1, n + 2)]
    assert stub.seen == {n: 1 for n in range(1, CLIENTS + 1)}  # each page sent once, none lost
