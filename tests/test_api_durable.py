"""Jobs survive their server: api.py killed with ``kill -9`` while a job is read (its third
page held at the stand-in endpoint, two pages read) and started again on the same data dir.
The job shows the interruption and keeps the pages read; ``jobs.on_restart`` resumes it
(the kept pages are not sent again), reads it again from the start, or keeps it interrupted
with its pages downloadable. A job still queued runs after the restart whatever the setting;
a second server on the same data dir is refused in one sentence."""

from __future__ import annotations

import io
import threading
from collections import Counter

import pytest
import requests

from managers.jobs.store import JobStore
from tests.api_calls import TIMEOUT, job, post, wait_for
from tests.api_server import APIServer
from tests.fixtures.openai_stub import OpenAIStub, ink_lines
from tests.helpers import ENGLISH, render_lines

HELD_PAGE = 3  # the page of three lines waits at the endpoint until the server is killed


class CountingStub(OpenAIStub):
    """The stand-in endpoint, counting the pages it is sent by their number of lines (page N
    of the test's document has N lines); the held page waits while ``holding``."""

    def __init__(self):
        self.sent: Counter[int] = Counter()
        self.holding, self.reached, self.gate = True, threading.Event(), threading.Event()
        super().__init__(delay=self._delay)

    def _delay(self, image) -> float:
        lines = len(ink_lines(image))
        with self._lock:
            self.sent[lines] += 1
        if lines == HELD_PAGE and self.holding:
            self.reached.set()
            self.gate.wait(TIMEOUT)
        return 0.0


@pytest.fixture
def stub():
    server = CountingStub()
    yield server
    server.gate.set()
    server.close()


def three_pages() -> bytes:
    """A TIFF whose page N has N lines, so the endpoint tells the pages apart."""
    frames = [render_lines(ENGLISH[:n], size=(1400, 360), top=40, gap=100) for n in (1, 2, 3)]
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    return tiff.getvalue()


def server(tmp_path, stub, on_restart: str) -> APIServer:
    return APIServer(tmp_path, data_dir=tmp_path / "data", models={"dots_ocr": {"vllm": {"endpoint": stub.url + "/v1"}}},
                     jobs={"on_restart": on_restart})


def kill_mid_job(tmp_path, stub, on_restart: str) -> tuple[str, str]:
    """Start a server, read a three-page job until its third page is in flight with two
    read, queue a second job behind it, and kill -9 the server: the two jobs' ids."""
    first = server(tmp_path, stub, on_restart).start()
    try:
        cut = post(first, [("tender.tiff", three_pages())], model="dots_ocr", task="ocr").json()["id"]
        assert stub.reached.wait(TIMEOUT)
        wait_for(first, cut, ("running",), pages_done=2)
        queued = post(first, [("later.tiff", three_pages())], model="tesseract", pages="1")
        assert queued.json()["state"] == "queued"
    finally:
        first.kill()
    stub.holding = False
    stub.gate.set()  # the held request ends; its answer goes nowhere
    return cut, queued.json()["id"]


def states(api: APIServer, job_id: str) -> list[str]:
    seen = requests.get(f"{api.url}/v1/jobs/{job_id}/events", timeout=TIMEOUT, stream=True)
    return [line.split('"state": "')[1].split('"')[0] for line in seen.iter_lines(decode_unicode=True)
            if line.startswith("data:") and '"state": "' in line]


def test_resumed_after_kill_9_the_pages_read_are_not_read_again_and_a_second_server_is_refused(tmp_path, stub):
    cut, queued = kill_mid_job(tmp_path, stub, "resume")
    with server(tmp_path, stub, "resume") as again:
        assert states(again, cut) == ["queued", "running", "interrupted", "queued", "running", "done"]
        shown = job(again, cut)
        assert (shown["state"], shown["interruptions"], shown["pages_done"]) == ("done", 1, 3)
        assert stub.sent == {1: 1, 2: 1, 3: 2}  # only the page in flight at the kill is sent again
        pages = requests.get(f"{again.url}/v1/jobs/{cut}/result", timeout=TIMEOUT).json()["pages"]
        assert [page["text"].count("line") for page in pages] == [1, 2, 3]

        later = wait_for(again, queued)
        assert (later["state"], later["interruptions"]) == ("done", 0)
        assert "Invoice number 4711" in requests.get(f"{again.url}/v1/jobs/{queued}/result",
                                                     params={"format": "txt"}, timeout=TIMEOUT).text

        second = server(tmp_path, stub, "resume")
        with pytest.raises(RuntimeError, match="exited with 1"):
            second.start()
        assert second.log().strip() == (f"error: Another API server reads the jobs in {tmp_path / 'data' / 'jobs'}; "
                                        "stop it, or give this one a data dir of its own (CHATVLMLLM_DATA_DIR).")
        assert requests.get(again.url + "/health", timeout=TIMEOUT).status_code == 200  # the first is unharmed


def test_requeued_after_kill_9_the_job_is_read_again_from_the_start(tmp_path, stub):
    cut, queued = kill_mid_job(tmp_path, stub, "requeue")
    with server(tmp_path, stub, "requeue") as again:
        assert states(again, cut)[-4:] == ["interrupted", "queued", "running", "done"]
        shown = job(again, cut)
        assert (shown["state"], shown["interruptions"], shown["pages_done"]) == ("done", 1, 3)
        assert stub.sent == {1: 2, 2: 2, 3: 2}
        assert wait_for(again, queued)["state"] == "done"


def test_kept_after_kill_9_the_job_stays_interrupted_with_its_pages_downloadable(tmp_path, stub):
    cut, queued = kill_mid_job(tmp_path, stub, "keep")
    with server(tmp_path, stub, "keep") as again:
        assert wait_for(again, queued)["state"] == "done"  # the queued one runs all the same
        shown = job(again, cut)
        assert (shown["state"], shown["interruptions"], shown["pages_done"], shown["pages_total"]) == (
            "interrupted", 1, 2, 3)
        assert shown["state_text"] == "interrupted"
        read = requests.get(f"{again.url}/v1/jobs/{cut}/result", timeout=TIMEOUT)
        assert read.headers["x-job-state"] == "interrupted"
        assert [page["index"] for page in read.json()["pages"]] == [0, 1]
        assert stub.sent == {1: 1, 2: 1, 3: 1}
        # Nothing more happens to it unless a client acts, so its events end there.
        assert states(again, cut)[-1] == "interrupted"
        # Only an interrupted job is resumed; this one goes on from its first unread page.
        refused = requests.post(f"{again.url}/v1/jobs/{queued}/resume", timeout=TIMEOUT)
        assert (refused.status_code, refused.json()["error"]) == (409, {
            "code": "superseded", "message": "The job is done, not interrupted; only an interrupted job is resumed."})
        assert requests.post(f"{again.url}/v1/jobs/{cut}/resume", timeout=TIMEOUT).json()["state"] == "queued"
        shown = wait_for(again, cut)
        assert (shown["state"], shown["interruptions"], shown["pages_done"]) == ("done", 1, 3)
        assert states(again, cut)[-4:] == ["interrupted", "queued", "running", "done"]
        assert stub.sent == {1: 1, 2: 1, 3: 2}


def test_a_kept_job_can_be_cancelled_and_its_pages_stay(tmp_path, stub):
    cut, _queued = kill_mid_job(tmp_path, stub, "keep")
    with server(tmp_path, stub, "keep") as again:
        assert requests.delete(f"{again.url}/v1/jobs/{cut}", timeout=TIMEOUT).json()["state"] == "cancelled"
        assert states(again, cut)[-2:] == ["interrupted", "cancelled"]
        assert len(requests.get(f"{again.url}/v1/jobs/{cut}/result", timeout=TIMEOUT).json()["pages"]) == 2


def test_stopped_while_a_client_follows_a_job_the_server_ends_and_the_job_resumes(tmp_path, stub):
    """SIGTERM (systemd, Ctrl-C) while a client follows a job's events: a stream that lasts
    as long as the job must not keep the server from stopping; the job resumes after."""
    first = server(tmp_path, stub, "resume").start()
    try:
        cut = post(first, [("tender.tiff", three_pages())], model="dots_ocr", task="ocr").json()["id"]
        assert stub.reached.wait(TIMEOUT)
        following = requests.get(f"{first.url}/v1/jobs/{cut}/events", stream=True, timeout=TIMEOUT)
        assert following.status_code == 200
        first.process.terminate()
        assert first.process.wait(TIMEOUT) is not None, first.log()[-2000:]
        following.close()
    finally:
        first.kill()
    # Stopped, not killed: the server handed the job back itself, with the two pages read.
    stopped = JobStore(tmp_path / "data" / "jobs").get(cut)
    assert (stopped.state, stopped.interruptions, stopped.pages_done, stopped.worker) == ("queued", 1, 2, None)
    stub.holding = False
    stub.gate.set()
    with server(tmp_path, stub, "resume") as again:
        shown = wait_for(again, cut)
        assert (shown["state"], shown["interruptions"], shown["pages_done"]) == ("done", 1, 3)
