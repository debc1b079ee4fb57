"""The dispatcher's guards, turn by turn against a real redis-server and a real job store: what
a worker sends counts only under the attempt it was given, and a worker whose heartbeat lapsed
loses its job and its queue. The worker's side is its own code (``RedisSink``, ``Heartbeat``)
driven by the test, so each step is seen without waiting on processes."""

from __future__ import annotations

import os
import threading

import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from rq.job import Job

from managers.jobs.dispatch import Dispatcher
from managers.jobs.redis_queue import (HEARTBEAT_TTL_S, JOB_FUNCTION, RUNNING, WORKERS, Attempt, Heartbeat, connect, heartbeat_key,
                                       queue_name)
from managers.jobs.remote_worker import RedisSink, rq_worker
from managers.jobs.store import JobStore, Spec
from models.errors import ConfigError
from models.result import PageResult
from tests.redis_server import RedisServer

TESS = ("cpu", "tesseract")


@pytest.fixture
def dispatcher(tmp_path, config):
    with RedisServer(tmp_path) as server:
        jobs = config.jobs.model_copy(update={"backend": "redis", "redis_url": server.url})
        made = Dispatcher(config.model_copy(update={"jobs": jobs}), JobStore(tmp_path / "jobs"))
        made.redis = connect(server.url)
        yield made


def alive(dispatcher: Dispatcher, name: str, instance: str = "first") -> None:
    """What a live worker's heartbeat thread writes."""
    dispatcher.redis.set(heartbeat_key(name), Heartbeat(instance, TESS, frozenset({TESS})).dumps(), ex=HEARTBEAT_TTL_S)
    dispatcher.redis.sadd(WORKERS, name)


def sink(dispatcher: Dispatcher, job_id: str, token: str) -> RedisSink:
    return RedisSink(dispatcher.redis, job_id, token, {}, {}, threading.Event())


def test_pages_count_only_under_the_attempt_given_and_a_dead_workers_job_and_queue_go(dispatcher):
    store = dispatcher.store
    job = store.add("local", Spec("tesseract", "cpu", needs_gpu=False), [("a.png", b"png", [0, 1])])
    alive(dispatcher, "w1")
    dispatcher._turn()
    assert store.get(job.id).state == "running" and store.get(job.id).worker == "w1"
    token = Attempt.loads(dispatcher.redis.hget(RUNNING, job.id)).token
    assert Queue(queue_name("w1"), connection=dispatcher.redis).job_ids == [token]

    assert sink(dispatcher, job.id, token).page_read(0, PageResult(index=0, text="first"), None)
    sink(dispatcher, job.id, "not-the-attempt").page_read(0, PageResult(index=1, text="stray"), None)
    dispatcher._turn()
    assert {i: p.text for i, p in store.pages(job.id, 0).items()} == {0: "first"}

    dispatcher.redis.delete(heartbeat_key("w1"))  # as a kill -9 leaves it once the key expires
    assert dispatcher._turn() == [job.id]
    again = store.get(job.id)
    assert (again.state, again.interruptions, again.worker) == ("queued", 1, None)
    assert not dispatcher.redis.exists(Queue(queue_name("w1"), connection=dispatcher.redis).key)
    assert not dispatcher.redis.sismember(WORKERS, "w1")

    alive(dispatcher, "w2")
    dispatcher._turn()
    assert store.get(job.id).worker == "w2"
    late = sink(dispatcher, job.id, token)  # w1 was only slow, say: what it sends now is not kept
    assert not late.page_read(0, PageResult(index=1, text="late"), None)  # and it is told to stop
    dispatcher._turn()
    assert sorted(store.pages(job.id, 0)) == [0]


def test_a_worker_restarted_under_its_name_loses_the_job_its_last_life_held(dispatcher):
    store = dispatcher.store
    job = store.add("local", Spec("tesseract", "cpu", needs_gpu=False), [("a.png", b"png", [0])])
    alive(dispatcher, "w1", "first")
    dispatcher._turn()
    alive(dispatcher, "w1", "second")
    assert dispatcher._turn() == [job.id]
    assert store.get(job.id).interruptions == 1


def test_a_job_cancelled_before_its_worker_took_it_leaves_the_workers_queue(dispatcher):
    """Else the worker would still take it, and switch its model for a job nobody wants."""
    store = dispatcher.store
    job = store.add("local", Spec("tesseract", "cpu", needs_gpu=False), [("a.png", b"png", [0])])
    alive(dispatcher, "w1")
    dispatcher._turn()
    queue = Queue(queue_name("w1"), connection=dispatcher.redis)
    token = Attempt.loads(dispatcher.redis.hget(RUNNING, job.id)).token
    assert queue.job_ids == [token]

    store.cancel(job.id)
    dispatcher._turn()
    assert not dispatcher.redis.hexists(RUNNING, job.id)
    assert queue.job_ids == [] and not dispatcher.redis.exists(Job.key_for(token))  # its documents went too


def test_a_second_api_on_the_same_redis_is_refused_not_left_to_withdraw_the_first_ones_jobs(tmp_path, dispatcher):
    """Each API withdraws every attempt its own store does not run and takes every result:
    two on one Redis would cancel each other's jobs and drop each other's pages."""
    config, url = dispatcher.config, dispatcher.config.jobs.redis_url
    first = Dispatcher(config, JobStore(tmp_path / "first"))
    first.start("requeue")
    try:
        second = Dispatcher(config, JobStore(tmp_path / "second"))
        with pytest.raises(ConfigError, match=f"Another API server hands out jobs on {url}"):
            second.start("requeue")
        assert not second._thread.is_alive()
    finally:
        first.stop()
    second = Dispatcher(config, JobStore(tmp_path / "second"))  # the first one stopped: this one may
    second.start("requeue")
    second.stop()


class Planted:
    """Pickled, it makes whoever unpickles it create a folder."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_a_worker_runs_no_function_but_its_own_and_unpickles_nothing_from_redis(tmp_path, dispatcher):
    """Whoever can write to the Redis would else run code on every worker: RQ imports a job's
    function by the name it finds there, and unpickles its arguments by default."""
    client, named, unpickled = dispatcher.redis, tmp_path / "named", tmp_path / "unpickled"
    Queue(queue_name("w1"), connection=client, serializer=JSONSerializer).enqueue_call("os.mkdir", args=(str(named),))
    Queue(queue_name("w1"), connection=client).enqueue_call(JOB_FUNCTION, args=(Planted(unpickled),))
    worker = rq_worker(client, "w1", "first", threading.Event())
    worker.work(burst=True, logging_level="CRITICAL")
    assert not named.exists() and not unpickled.exists()
    assert len(Queue(queue_name("w1"), connection=client).failed_job_registry) == 2


def test_a_job_its_worker_could_not_run_fails_in_one_sentence_instead_of_going_round_forever(dispatcher):
    """An error RQ caught (here: read() outside cli.py worker; a worker of another version
    alike) happens again on every try: requeued, the job went back to the same worker each turn."""
    store = dispatcher.store
    job = store.add("local", Spec("tesseract", "cpu", needs_gpu=False), [("a.png", b"png", [0])])
    alive(dispatcher, "w1")
    dispatcher._turn()
    rq_worker(dispatcher.redis, "w1", "first", threading.Event()).work(burst=True, logging_level="CRITICAL")
    dispatcher._turn()
    failed = store.get(job.id)
    assert (failed.state, failed.interruptions) == ("failed", 0)
    assert failed.error.render("en") == ("Worker w1 could not run the job (AssertionError: RQ jobs of chatvlmllm "
                                         "run only inside cli.py worker); see its log.")


def test_a_job_no_live_worker_can_run_says_so_until_one_can(dispatcher):
    store = dispatcher.store
    job = store.add("local", Spec("dots_ocr", "vllm"), [("a.png", b"png", [0])])
    alive(dispatcher, "w1")  # it runs Tesseract only
    dispatcher._turn()
    waits = store.get(job.id)
    assert waits.state == "queued"
    assert waits.note == ("No live worker can run dots_ocr in vllm mode; the job waits for one that can (cli.py "
                          "worker on a machine with it).")
    dispatcher._turn()  # said once, not every turn
    assert [event.kind for event in store.events(job.id)] == ["state", "note"]

    dispatcher.redis.set(heartbeat_key("w2"), Heartbeat("first", None, frozenset({("vllm", "dots_ocr")})).dumps(),
                         ex=HEARTBEAT_TTL_S)
    dispatcher.redis.sadd(WORKERS, "w2")
    dispatcher._turn()
    taken = store.get(job.id)
    assert (taken.state, taken.worker, taken.note) == ("running", "w2", None)


def test_a_job_whose_worker_dies_each_time_fails_at_its_limit_with_its_pages(tmp_path, dispatcher):
    store = JobStore(tmp_path / "limited", max_interruptions=2)
    dispatcher.store = store
    job = store.add("local", Spec("tesseract", "cpu", needs_gpu=False), [("a.png", b"png", [0, 1])])
    for life in ("first", "second"):
        alive(dispatcher, "w1", life)
        dispatcher._turn()
        token = Attempt.loads(dispatcher.redis.hget(RUNNING, job.id)).token
        if life == "first":
            assert sink(dispatcher, job.id, token).page_read(0, PageResult(index=0, text="first"), None)
            dispatcher._turn()
        dispatcher.redis.delete(heartbeat_key("w1"))  # it died on the job
        dispatcher._turn()
    ended = store.get(job.id)
    assert (ended.state, ended.interruptions) == ("failed", 2)
    assert ended.error == ("The job was interrupted 2 times, its limit (jobs.max_interruptions), so it is not read "
                           "again; the pages read are kept.")
    assert {i: p.text for i, p in store.pages(job.id, 0).items()} == {0: "first"}
