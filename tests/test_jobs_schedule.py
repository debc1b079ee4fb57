"""Which queued job goes next (models/jobs.py ``next_job``): model by model, so the GPU does
not switch back and forth, without starving a job past ``jobs.max_wait_s``, and with jobs that
need no GPU (Tesseract, a remote endpoint) taken in their turn. Pure decisions first, then the
embedded worker's loop over a real job store, then a real api.py: Tesseract and the stand-in
endpoint need no GPU, so their jobs run in the order they came."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from managers.jobs.local import LocalWorker
from managers.jobs.store import JobStore, Spec
from models.jobs import DONE, Waiting, next_job
from tests.api_calls import job, post, small_page, wait_for
from tests.api_server import APIServer
from tests.fixtures.openai_stub import OpenAIStub
from tests.helpers import ENGLISH

A, B = ("vllm", "qwen3_vl_2b"), ("vllm", "dots_ocr")
CPU = ("cpu", "tesseract")


def waiting(*jobs: tuple[str, tuple[str, str], float], gpu=(A, B)) -> list[Waiting]:
    return [Waiting(name, model, mode, at, (mode, model) in gpu) for name, (mode, model), at in jobs]


def run_all(queue: list[Waiting], holding, now: float = 10.0, max_wait_s: float = 300) -> list[str]:
    """The order a worker reads ``queue`` in, the GPU holding what it read last (a job that
    needs no GPU leaves it as it was)."""
    order, queue = [], list(queue)
    while chosen := next_job(queue, holding, now, max_wait_s):
        order.append(chosen.id)
        queue.remove(chosen)
        if chosen.needs_gpu:
            holding = (chosen.mode, chosen.model)
    return order


def test_jobs_of_the_held_model_go_first_then_the_others_grouped():
    queue = waiting(("a1", A, 1.0), ("b1", B, 2.0), ("a2", A, 3.0), ("b2", B, 4.0), ("a3", A, 5.0))
    assert run_all(queue, holding=A) == ["a1", "a2", "a3", "b1", "b2"]
    assert run_all(queue, holding=B) == ["b1", "b2", "a1", "a2", "a3"]
    # Nothing on the GPU: the oldest job decides, the jobs of its model follow it.
    assert run_all(queue, holding=None) == ["a1", "a2", "a3", "b1", "b2"]


def test_a_job_that_waited_max_wait_s_goes_next_whatever_the_gpu_holds():
    queue = waiting(("b1", B, 0.0), ("a1", A, 50.0), ("a2", A, 60.0))
    assert next_job(queue, A, now=99.0, max_wait_s=100).id == "a1"
    assert next_job(queue, A, now=100.0, max_wait_s=100).id == "b1"  # waited 100 s: its turn
    # The oldest of the starved goes first, and max_wait_s 0 is plain first come, first served.
    assert run_all(queue, holding=A, now=200.0, max_wait_s=100) == ["b1", "a1", "a2"]
    assert run_all(waiting(("a1", A, 1.0), ("b1", B, 2.0), ("a2", A, 3.0)), holding=A, max_wait_s=0) == [
        "a1", "b1", "a2"]


def test_jobs_that_need_no_gpu_take_their_turn_and_force_no_switch():
    queue = waiting(("t1", CPU, 1.0), ("b1", B, 2.0), ("t2", CPU, 3.0), ("a1", A, 4.0))
    # Holding A: Tesseract goes in its turn, B waits behind the jobs that need no switch.
    assert run_all(queue, holding=A) == ["t1", "t2", "a1", "b1"]
    assert run_all(queue, holding=None) == ["t1", "b1", "t2", "a1"]
    only_cpu = waiting(("t1", CPU, 1.0), ("e1", ("vllm", "remote"), 2.0), ("t2", CPU, 3.0))
    assert run_all(only_cpu, holding=A) == run_all(only_cpu, holding=None) == ["t1", "e1", "t2"]
    assert next_job([], A, 0.0, 300) is None


class Recorder(LocalWorker):
    """The embedded worker's loop over a real store, with what it reads recorded instead of
    read: the GPU holds the model of the last job that needed it."""

    def __init__(self, store: JobStore, config, holding):
        super().__init__(SimpleNamespace(config=config), store)
        self.loaded, self.order, self.finished = holding, [], threading.Event()

    def holding(self):
        return self.loaded

    def _read(self, job_id: str) -> None:
        spec = self.store.get(job_id).spec
        self.order.append(spec.model)
        if spec.needs_gpu:
            self.loaded = (spec.mode, spec.model)
        self.store.finish(job_id, DONE)
        if not self.store.waiting():
            self.finished.set()


@pytest.mark.parametrize("max_wait_s, order", [(300, ["a", "t", "a", "b", "b"]), (0, ["a", "b", "t", "a", "b"])])
def test_the_worker_reads_a_real_store_model_by_model(tmp_path, config, max_wait_s, order):
    store = JobStore(tmp_path / "jobs")
    page = [("a.png", b"not read", [0])]
    for model in ("a", "b", "t", "a", "b"):
        mode = "cpu" if model == "t" else "vllm"
        store.add("local", Spec(model, mode, needs_gpu=model != "t"), page)
        time.sleep(0.01)  # distinct queue times, as requests have
    settings = config.model_copy(update={"jobs": config.jobs.model_copy(update={"max_wait_s": max_wait_s})})
    worker = Recorder(store, settings, holding=("vllm", "a"))
    worker.start("resume")
    try:
        assert worker.finished.wait(30)
    finally:
        worker.stop()
    assert worker.order == order


def test_jobs_that_need_no_gpu_run_in_the_order_they_came_through_the_api(tmp_path):
    """Tesseract and an endpoint never switch the GPU, so the API reads their jobs first come,
    first served: the first holds the worker at the endpoint while the others queue."""
    gate = threading.Event()
    stub = OpenAIStub(delay=lambda _image: gate.wait(60) and 0.0)
    try:
        with APIServer(tmp_path, models={"dots_ocr": {"vllm": {"endpoint": stub.url + "/v1"}}}) as api:
            page = small_page(ENGLISH)
            models = ["dots_ocr", "tesseract", "dots_ocr", "tesseract"]
            first = post(api, [("a.png", page)], model=models[0], task="ocr").json()["id"]
            wait_for(api, first, ("running",))
            ids = [first] + [post(api, [("a.png", page)], model=model, **({"task": "ocr"} if model == "dots_ocr" else {}))
                             .json()["id"] for model in models[1:]]
            gate.set()
            started = [wait_for(api, job_id)["started"] for job_id in ids]
            assert [job(api, job_id)["state"] for job_id in ids] == ["done"] * 4
            assert started == sorted(started)
    finally:
        gate.set()
        stub.close()
