"""``cli.py worker``: reads the API's jobs on this machine (``jobs.backend: redis``).

A worker runs where the GPU is, with its own config and data dir, so its own arbiter and
model. It says it is alive with a heartbeat key that lapses seconds after it stops being
refreshed (managers/jobs/redis_queue.py), carrying what it holds and what its machine can
run; the API's dispatcher routes jobs by it onto the worker's own RQ queue. RQ's
``SimpleWorker`` reads that queue in this process, without forking, so the model stays
loaded from one job to the next.

Each page goes back through Redis as soon as it is read (``RedisSink``). Reading stops when
the API withdraws the job's attempt (a cancel, or the job was given to another worker) or
when the worker is told to stop (Ctrl-C, SIGTERM): then the job is handed back unfinished
and another worker resumes it at its first unread page.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from managers import runs
from managers.availability import probe_host, why_not
from managers.jobs.redis_queue import (CANCELLED_END, GIVEN_BACK, HEARTBEAT_EVERY_S, HEARTBEAT_TTL_S, JOB_FUNCTION,
                                       RESULTS, RUNNING, SERIALIZER, WORKERS, Attempt, Heartbeat, connect,
                                       from_job_args, heartbeat_key, pack, queue_name, shown)
from managers.jobs.store import RAW, Document, Spec
from managers.jobs.work import Sink, run_job
from managers.runtime import Runtime
from models.config import AppConfig
from models.errors import ConfigError
from models.i18n import Message, _
from models.result import OCRResult, PageResult

log = logging.getLogger(__name__)

# The process's worker, which the RQ jobs it takes run in (``serve`` sets it).
_current: Worker | None = None


class RedisSink(Sink):
    """A job read on this machine: its documents came with it; pages go back through Redis."""

    def __init__(self, client: redis.Redis, job_id: str, token: str, data: dict[int, bytes],
                 kept: dict[int, dict[int, str]], stopping: threading.Event):
        self.client, self.job_id, self.token = client, job_id, token
        self.data, self.kept_pages, self.stopping = data, kept, stopping

    def document(self, n: int) -> bytes:
        return self.data[n]

    def kept(self, n: int) -> dict[int, PageResult]:
        return {index: PageResult.model_validate_json(page) for index, page in self.kept_pages.get(n, {}).items()}

    def page_read(self, n: int, page: PageResult, prepared: bytes | None) -> bool:
        self._send({"kind": "page", "n": n, "page": page.model_dump_json(context=RAW)}, prepared or b"")
        return not self.cancelled()

    def document_read(self, n: int, result: OCRResult) -> None:
        header = result.model_copy(update={"pages": []}).model_dump_json(context=RAW)
        self._send({"kind": "document", "n": n, "result": header})

    def cancelled(self) -> bool:
        if self.stopping.is_set():
            return True
        raw = self.client.hget(RUNNING, self.job_id)
        return raw is None or Attempt.loads(raw).token != self.token

    def end(self, state: str, error: Message | None = None) -> None:
        self._send({"kind": "end", "state": state, "error": error.raw() if error else None})

    def _send(self, header: dict, payload: bytes = b"") -> None:
        self.client.rpush(RESULTS, pack({"job": self.job_id, "token": self.token, **header}, payload))


class Worker:
    def __init__(self, config: AppConfig, name: str, client: redis.Redis):
        self.config, self.name, self.client = config, name, client
        self.runtime = Runtime(config)
        self.instance = uuid.uuid4().hex
        self.stopping = threading.Event()  # Ctrl-C or SIGTERM: hand the job back, then stop
        self.last: tuple[str, str] | None = None  # the (mode, model) read last
        self._beat_lock = threading.Lock()  # no heartbeat slips in after leave()
        host = probe_host(config)
        self.can_run = frozenset((mode, key) for key, model in config.models.items() for mode in model.modes
                                 if why_not(model, mode, host, config) is None)

    def holding(self) -> tuple[str, str] | None:
        holder = self.runtime.arbiter.holder()
        return (holder.mode, holder.model) if holder else self.last

    def beat(self) -> None:
        with self._beat_lock:
            if self.stopping.is_set():
                return
            with self.client.pipeline() as pipe:
                pipe.set(heartbeat_key(self.name), Heartbeat(self.instance, self.holding(), self.can_run).dumps(),
                         ex=HEARTBEAT_TTL_S)
                pipe.sadd(WORKERS, self.name)
                pipe.execute()

    def leave(self) -> None:
        """Stop saying this worker is alive, so that no job is routed to it any more."""
        with self._beat_lock:
            self.client.delete(heartbeat_key(self.name))

    def prepare(self, key: str, mode: str) -> None:
        """Make the model ready (switch or load it) so this worker holds it from the start."""
        runs.make_ready(self.runtime, key, mode)
        self.last = (mode, key)

    def read(self, job_id: str, token: str, spec: Spec, documents: list[Document], data: dict[int, bytes],
             kept: dict[int, dict[int, str]]) -> None:
        sink = RedisSink(self.client, job_id, token, data, kept, self.stopping)
        log.info("job %s: reading %s (%s)", job_id, spec.model, spec.mode)
        try:
            ended = run_job(self.runtime, spec, documents, sink)
        finally:
            self.last = (spec.mode, spec.model)
        if ended is None and self.stopping.is_set():
            self.leave()  # first, or the job handed back could be routed straight back here
            sink.end(GIVEN_BACK)
        elif ended is None:
            sink.end(CANCELLED_END)
        else:
            sink.end(*ended)
        log.info("job %s: %s", job_id, ended[0] if ended else "stopped")


def read(*args) -> None:
    """The RQ job: read one API job (``job_args``) in this process's worker."""
    assert _current is not None, "RQ jobs of chatvlmllm run only inside cli.py worker"
    _current.read(*from_job_args(*args))


class _OurJob(Job):
    """An RQ job that runs ``read`` or nothing: RQ would import any function, and call any
    callback, that a job in Redis names."""

    success_callback = failure_callback = stopped_callback = None

    @property
    def func(self):
        if self.func_name != JOB_FUNCTION:
            raise ValueError(f"not a job of chatvlmllm: {self.func_name}")
        return read


class _RQWorker(SimpleWorker):
    """RQ's in-process worker, whose first Ctrl-C or SIGTERM also tells the job being read
    to stop (RQ's own warm shutdown would wait for the whole job)."""

    stopping: threading.Event

    def handle_warm_shutdown_request(self):
        self.stopping.set()
        super().handle_warm_shutdown_request()

    def subscribe(self):
        """No RQ command channel: the API stops a job by withdrawing its attempt. (Its thread
        also held a stopping worker up to a minute: redis-py 8 joins it without a timeout
        while it waits 60 s for a message.)"""


def rq_worker(client: redis.Redis, name: str, instance: str, stopping: threading.Event) -> _RQWorker:
    """RQ's worker for the queue of the worker ``name``."""
    rq = _RQWorker([Queue(queue_name(name), connection=client, serializer=SERIALIZER, job_class=_OurJob)],
                   connection=client, name=f"{name}.{instance}", serializer=SERIALIZER, job_class=_OurJob)
    rq.stopping = stopping
    return rq


def serve(config: AppConfig, name: str, model: str | None = None, mode: str | None = None,
          on_ready: Callable[[], None] | None = None) -> None:
    """Be a worker named ``name`` until told to stop; with ``model``, make it ready first in
    ``mode`` (as ``runs.check_mode`` resolved it). NotAvailable when Redis does not answer,
    ConfigError when a live worker has the name."""
    url = config.jobs.redis_url
    client = connect(url, timeout=None)  # RQ blocks on its queue between jobs
    if client.exists(heartbeat_key(name)):
        raise ConfigError(_("A worker named {name} is already running on {url}; give this one another --name.",
                            name=name, url=shown(url)))
    worker = Worker(config, name, client)
    try:
        if model:
            worker.prepare(model, mode)
        _run(worker, on_ready)
    finally:
        worker.runtime.close()


def _run(worker: Worker, on_ready: Callable[[], None] | None) -> None:
    global _current
    _current = worker
    done = threading.Event()

    def keep_alive() -> None:
        while not done.wait(HEARTBEAT_EVERY_S):
            try:
                worker.beat()
            except redis.RedisError as exc:
                log.warning("the heartbeat to Redis failed: %s", exc)

    worker.beat()
    beating = threading.Thread(target=keep_alive, name="worker-heartbeat", daemon=True)
    beating.start()
    rq = rq_worker(worker.client, worker.name, worker.instance, worker.stopping)
    if on_ready:
        on_ready()
    try:
        rq.work(logging_level="WARNING")
    finally:
        done.set()
        beating.join(timeout=HEARTBEAT_EVERY_S * 2)
        worker.leave()
        _current = None
