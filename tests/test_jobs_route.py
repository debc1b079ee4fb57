"""models/jobs.py ``route``: which idle ``cli.py worker`` reads which queued job (pure, no
Redis): the worker holding a job's model first, spare workers for the rest, a starved job
before all, and a job no worker can run left queued."""

from __future__ import annotations

from models.jobs import Reader, Waiting, route

WAIT = 300
QWEN, DOTS, TESS = ("local", "qwen3_vl_2b"), ("vllm", "dots_ocr"), ("cpu", "tesseract")
EVERYTHING = frozenset({QWEN, DOTS, TESS})


def job(name: str, model: tuple[str, str], queued_at: float) -> Waiting:
    mode, key = model
    return Waiting(name, key, mode, queued_at, needs_gpu=mode != "cpu")


def worker(name: str, holding: tuple[str, str] | None, can_run=EVERYTHING) -> Reader:
    return Reader(name, holding, frozenset(can_run))


def routed(waiting, idle, now: float = 100.0) -> dict[str, str]:
    return {job.id: reader.name for job, reader in route(waiting, idle, now, WAIT)}


def test_each_job_goes_to_the_idle_worker_that_holds_its_model():
    waiting = [job("t", TESS, 1), job("d", DOTS, 2), job("q", QWEN, 3)]
    idle = [worker("a", QWEN), worker("b", DOTS), worker("c", TESS)]
    assert routed(waiting, idle) == {"q": "a", "d": "b", "t": "c"}


def test_a_holder_takes_its_oldest_job_and_the_next_waits_for_it_rather_than_switch_another():
    waiting = [job("q2", QWEN, 2), job("q1", QWEN, 1), job("d1", DOTS, 3)]
    idle = [worker("a", QWEN), worker("b", DOTS)]
    # b holds dots: it reads d1, and q2 waits for a (model by model, no switch of b).
    assert routed(waiting, idle) == {"q1": "a", "d1": "b"}


def test_without_a_holder_a_worker_holding_nothing_goes_first_then_one_whose_model_nobody_needs():
    waiting = [job("q", QWEN, 1)]
    assert routed(waiting, [worker("a", DOTS), worker("b", None)]) == {"q": "b"}
    assert routed(waiting, [worker("a", DOTS)]) == {"q": "a"}  # no dots job waits: a switches


def test_a_job_goes_only_where_it_can_run_and_otherwise_stays_queued():
    waiting = [job("q", QWEN, 1), job("t", TESS, 2)]
    idle = [worker("cpu-only", None, {TESS})]
    assert routed(waiting, idle) == {"t": "cpu-only"}
    assert routed([job("q", QWEN, 1)], idle) == {}
    assert routed(waiting, []) == {}


def test_a_job_that_waited_too_long_takes_a_worker_before_younger_jobs():
    starved, young = job("old", DOTS, 0), job("young", QWEN, 99)
    idle = [worker("a", QWEN, {QWEN, DOTS})]
    # Before max_wait_s the young job keeps a's model; after it, the old one goes first.
    assert routed([starved, young], idle, now=WAIT - 1) == {"young": "a"}
    assert routed([starved, young], idle, now=WAIT + 1) == {"old": "a"}


def test_a_starved_job_prefers_a_worker_whose_model_no_other_job_needs():
    waiting = [job("old", TESS, 0), job("q", QWEN, 350), job("d", DOTS, 360)]
    idle = [worker("a", QWEN), worker("b", DOTS), worker("c", ("local", "qwen2_vl_2b"))]
    assert routed(waiting, idle, now=400) == {"old": "c", "q": "a", "d": "b"}


def test_ties_are_decided_the_same_way_every_time():
    waiting = [job("x", QWEN, 5), job("w", QWEN, 5)]
    idle = [worker("b", None), worker("a", None)]
    assert routed(waiting, idle) == {"w": "a", "x": "b"}
