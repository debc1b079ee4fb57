"""``jobs.backend: redis`` end to end: a real redis-server (tests/redis_server.py), api.py as
a real uvicorn process, and ``cli.py worker`` processes, each with a data dir of its own and
so an arbiter of its own. One worker holds Tesseract, the other dots.ocr served by the
stand-in endpoint (tests/fixtures/openai_stub.py), which can hold a page in flight so a test
acts mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.api_server import ROOT, APIServer, free_port, write_config
from tests.fixtures.openai_stub import OpenAIStub, ink_lines
from tests.helpers import encode, render_lines
from tests.redis_server import RedisServer
from tests.test_api_results import events, submit, wait_done

TIMEOUT = 60
SMALL = (700, 500)


def page(lines: int) -> bytes:
    """A small page with ``lines`` lines of ink: the stub tells pages apart by that count."""
    return encode(render_lines([f"Line {n} of the page" for n in range(lines)], size=SMALL), "PNG")


class Worker:
    """``cli.py worker`` as a process of its own, with its own data dir."""

    def __init__(self, folder: Path, config: Path, name: str, model: str):
        self.name, self.log_path = name, folder / f"worker-{name}.log"
        env = {**os.environ, "CHATVLMLLM_DATA_DIR": str(folder / f"worker-{name}-data")}
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "cli.py"), "--config", str(config), "worker", "--model", model,
                 "--name", name], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path):
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def stub():
    """A stand-in dots.ocr endpoint that counts the requests for each page (by its lines of
    ink); the first request for the page of ``hold_lines`` lines waits at ``gate``, with
    ``held`` set meanwhile."""
    gate, held = threading.Event(), threading.Event()
    asked: dict[int, int] = {}
    lock = threading.Lock()

    def delay(image) -> float:
        lines = len(ink_lines(image))
        with lock:
            asked[lines] = asked.get(lines, 0) + 1
            first = asked[lines] == 1
        if first and lines == server.hold_lines:
            held.set()
            gate.wait(TIMEOUT)
        return 0.0

    server = OpenAIStub(delay=delay)
    server.hold_lines, server.gate, server.held, server.asked = None, gate, held, asked
    yield server
    gate.set()
    server.close()


@pytest.fixture
def setup(tmp_path, redis_server, stub):
    """The API and the config its workers share (Redis, and dots.ocr at the stub)."""
    changes = {"jobs": {"backend": "redis", "redis_url": redis_server.url},
               "models": {"dots_ocr": {"vllm": {"endpoint": stub.url + "/v1"}}}}
    config = write_config(tmp_path / "worker-config.yaml", **changes)
    workers: list[Worker] = []

    def worker(name: str, model: str) -> Worker:
        made = Worker(tmp_path, config, name, model)
        workers.append(made)
        return made

    with APIServer(tmp_path, **changes) as api:
        yield api, worker, changes
    for made in workers:
        made.stop()


def live(api: APIServer, *names: str, workers: list[Worker] = ()) -> dict:
    """Wait until /health lists the workers ``names``; their entries."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for made in workers:
            assert made.process.poll() is None, f"worker {made.name} exited:\n{made.log()}"
        listed = {w["name"]: w for w in requests.get(api.url + "/health", timeout=TIMEOUT).json()["workers"]}
        if set(names) <= set(listed):
            return listed
        time.sleep(0.1)
    raise AssertionError(f"workers {names} not live:\n" + "\n".join(made.log() for made in workers))


def job(api: APIServer, job_id: str) -> dict:
    return requests.get(f"{api.url}/v1/jobs/{job_id}", timeout=TIMEOUT).json()


def wait_for(condition, what) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"waited {TIMEOUT} s for {what}"
        time.sleep(0.05)


def states(seen: list[tuple[int, str, dict]]) -> list[tuple[str, str | None]]:
    return [(data["state"], data.get("worker")) for _seq, kind, data in seen if kind == "state"]


def test_jobs_go_to_the_worker_that_holds_their_model(setup):
    api, worker, _changes = setup
    # Named so that a tie decided by name would send each job to the wrong worker.
    made = [worker("cpu", "tesseract"), worker("gpu", "dots_ocr")]
    listed = live(api, "cpu", "gpu", workers=made)
    assert listed["cpu"]["holding"] == ["cpu", "tesseract"] and listed["gpu"]["holding"] == ["vllm", "dots_ocr"]

    for _round in range(2):
        dots = submit(api, [("d.png", page(2))], model="dots_ocr")
        tess = submit(api, [("t.png", page(1))], model="tesseract")
        assert states(wait_done(api, dots["id"]))[1:] == [("running", "gpu"), ("done", None)]
        assert states(wait_done(api, tess["id"]))[1:] == [("running", "cpu"), ("done", None)]
        assert job(api, dots["id"])["worker"] == "gpu" and job(api, tess["id"])["worker"] == "cpu"
    text = requests.get(f"{api.url}/v1/jobs/{tess['id']}/result", params={"format": "txt"}, timeout=TIMEOUT).text
    assert "Line 0 of the" in text


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_a_worker_gone_mid_job_gives_it_back_and_another_resumes_it(setup, stub, stop):
    api, worker, _changes = setup
    dots, tess = worker("dots", "dots_ocr"), worker("tess", "tesseract")
    live(api, "dots", "tess", workers=[dots, tess])
    stub.hold_lines = 2
    started = submit(api, [("one.png", page(1)), ("two.png", page(2)), ("three.png", page(3))], model="dots_ocr")
    assert stub.held.wait(TIMEOUT), dots.log()
    wait_for(lambda: job(api, started["id"])["pages_done"] == 1, "the first page to reach the API")
    assert job(api, started["id"])["worker"] == "dots"

    dots.process.send_signal(stop)  # SIGTERM: the job is handed back at once; the page held is left
    wait_for(lambda: job(api, started["id"])["state"] in ("done", "failed"),
             f"the job to end:\n{api.log()}\n{tess.log()}\n{dots.log()}")
    seen = wait_done(api, started["id"])

    assert states(seen) == [("queued", None), ("running", "dots"), ("interrupted", None), ("queued", None),
                            ("running", "tess"), ("done", None)]
    finished = job(api, started["id"])
    assert finished["worker"] == "tess" and finished["interruptions"] == 1
    assert [d["pages_done"] for d in finished["documents"]] == [1, 1, 1]
    assert stub.asked == {1: 1, 2: 2, 3: 1}  # the page read before was not read again
    pages = requests.get(f"{api.url}/v1/jobs/{started['id']}/result", timeout=TIMEOUT).json()
    assert [[b["text"] for b in doc["pages"][0]["blocks"]] for doc in pages] == [
        ["line 1"], ["line 1", "line 2"], ["line 1", "line 2", "line 3"]]
    stub.gate.set()  # the stopped worker's page in flight ends: then it exits
    assert dots.process.wait(TIMEOUT) == (0 if stop == signal.SIGTERM else -signal.SIGKILL), dots.log()
    if stop == signal.SIGTERM:
        assert "worker dots stopped" in dots.log()


def held_on_one_worker(setup, stub) -> dict:
    """A two-page dots.ocr job on worker "dots" alone, its first page held at the stub."""
    api, worker, _changes = setup
    dots = worker("dots", "dots_ocr")
    live(api, "dots", workers=[dots])
    stub.hold_lines = 1
    started = submit(api, [("one.png", page(1)), ("two.png", page(2))], model="dots_ocr")
    assert stub.held.wait(TIMEOUT), dots.log()
    return started


def test_a_restarted_api_leaves_jobs_running_on_live_workers(setup, tmp_path, stub):
    api, _worker, changes = setup
    started = held_on_one_worker(setup, stub)
    api.kill()

    with APIServer(tmp_path, data_dir=api.data_dir, **changes) as again:
        assert job(again, started["id"])["state"] == "running"
        stub.gate.set()
        seen = wait_done(again, started["id"])
    assert states(seen) == [("queued", None), ("running", "dots"), ("done", None)]
    assert stub.asked == {1: 1, 2: 1}


def test_cancel_stops_the_job_on_its_worker(setup, stub):
    api = setup[0]
    cancelled = held_on_one_worker(setup, stub)

    answer = requests.delete(f"{api.url}/v1/jobs/{cancelled['id']}", timeout=TIMEOUT)
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"
    stub.gate.set()
    after = submit(api, [("three.png", page(3))], model="dots_ocr")
    assert states(wait_done(api, after["id"]))[-1] == ("done", None)  # the worker is free again

    assert 2 not in stub.asked  # the cancelled job's second page was never read
    assert job(api, cancelled["id"])["state"] == "cancelled"
    assert states(events(api, cancelled["id"])) == [("queued", None), ("running", "dots"), ("cancelled", None)]


def test_without_redis_each_part_says_so_in_one_sentence(tmp_path, redis_server):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    config = write_config(tmp_path / "nowhere.yaml", jobs={"backend": "redis", "redis_url": nowhere})
    env = {**os.environ, "CHATVLMLLM_DATA_DIR": str(tmp_path / "data")}
    for command in (["cli.py", "--config", str(config), "worker"], ["api.py", "--config", str(config)]):
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().count("\n") == 0, done.stderr
        assert f"Redis at {nowhere} does not answer" in done.stderr and "start redis-server" in done.stderr

    local = write_config(tmp_path / "sqlite.yaml")
    done = subprocess.run([sys.executable, "cli.py", "--config", str(local), "worker"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1 and "set jobs.backend: redis" in done.stderr and done.stderr.count("\n") == 1
    usage = subprocess.run([sys.executable, "cli.py", "--config", str(config), "worker", "--mode", "vllm"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert (usage.returncode, usage.stderr) == (
        2, "error: --mode is the mode of the model given with --model; give both, or neither.\n")

    with APIServer(tmp_path, jobs={"backend": "redis", "redis_url": redis_server.url}) as api:
        redis_server.stop()
        refused = requests.post(api.url + "/v1/jobs", files=[("files", ("a.png", page(1)))],
                                data={"model": "tesseract"}, timeout=TIMEOUT)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "not_available"
        assert "does not answer" in refused.json()["error"]["message"]
        health = requests.get(api.url + "/health", timeout=TIMEOUT).json()
        assert health["status"] == "degraded" and "start redis-server" in health["error"]
        assert health["jobs_unfinished"] == 0
