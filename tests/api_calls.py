"""Calls the API's limit, key and durability tests make against a live api.py: submit with a
key, follow a job to its end, count the jobs its store holds, and what an error must be."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from pathlib import Path

import requests

from tests.api_server import APIServer
from tests.helpers import encode, render_lines

TIMEOUT = 60
FINAL = ("done", "failed", "cancelled")


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def small_page(lines: list[str]) -> bytes:
    """A page a sixth of A4, enough for Tesseract to read ``lines`` and cheap to send."""
    return encode(render_lines(lines, size=(1400, 420), top=60, gap=80), "PNG")


def post(api: APIServer, files: list[tuple[str, bytes]], key: str | None = None, route: str = "/v1/jobs",
         headers: dict | None = None, **form) -> requests.Response:
    return requests.post(api.url + route, files=[("files", (name, data)) for name, data in files], data=form,
                         headers={**bearer(key), **(headers or {})}, timeout=TIMEOUT)


def job(api: APIServer, job_id: str, key: str | None = None) -> dict:
    answer = requests.get(f"{api.url}/v1/jobs/{job_id}", headers=bearer(key), timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for(api: APIServer, job_id: str, states=FINAL, key: str | None = None, pages_done: int = 0) -> dict:
    """The job once it is in one of ``states`` with at least ``pages_done`` pages read."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        shown = job(api, job_id, key)
        if shown["state"] in states and shown["pages_done"] >= pages_done:
            return shown
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is still {shown['state']} ({shown['pages_done']} pages):\n{api.log()[-2000:]}")


def text(api: APIServer, job_id: str, key: str | None = None) -> str:
    answer = requests.get(f"{api.url}/v1/jobs/{job_id}/result", params={"format": "txt"}, headers=bearer(key),
                          timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return answer.text


def refusal(answer: requests.Response, status: int, code: str) -> str:
    """The error's one sentence, after checking the status, the code and that it is one line
    ending in a full stop (no trace, no list of reasons)."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code, error
    message = error["message"]
    assert "\n" not in message and message.endswith(".") and "Traceback" not in message, message
    return message


def stored_jobs(data_dir: Path) -> int:
    """How many jobs the server's store holds, read beside it (SQLite in WAL mode)."""
    with sqlite3.connect(f"file:{data_dir / 'jobs' / 'jobs.sqlite3'}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def raw_answer(port: int, head: bytes, body: list[bytes]) -> tuple[str, dict]:
    """Send a request's ``head`` and the ``body`` pieces over a bare socket, never finishing
    the body, and read the answer: (status line, JSON body). A server that waited for the
    whole body would never answer, and the read would time out."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        for piece in body:
            sock.sendall(piece)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection without a whole answer: {answer!r}"
            answer += chunk
    status, _sep, rest = answer.decode().partition("\r\n")
    return status, json.loads(rest.partition("\r\n\r\n")[2])


def _length(answer: bytes) -> int:
    head = answer.partition(b"\r\n\r\n")[0].decode().lower()
    return next(int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length:"))
