"""The API's side of ``jobs.backend: redis``: a thread that hands queued jobs to live
``cli.py worker`` processes and brings what they read back into the store.

The API's process reads no job itself. Each turn, in one thread so no two steps race:

1. collect — the results list's items go into the store (pages, documents, ends), then
   leave Redis: an API killed in between applies them again, which the store takes as the
   same (a page is replaced, a final job stays final);
2. reconcile — a running job whose worker's heartbeat lapsed (killed, its machine gone)
   or restarted under the same name, or whose RQ job ended without a word back, is
   interrupted in the store, pages kept, and queued again as ``jobs.on_restart`` says; an attempt no longer running (cancelled, given back)
   is withdrawn, which stops its worker; a dead worker's RQ queue and registries are
   removed, so nothing given to it runs twice;
3. route — queued jobs go to idle workers (models/jobs.py ``route``): the job is claimed
   in the store with the worker's name and put on that worker's own RQ queue with its
   documents and the pages already kept, so a resumed job reads only its unread pages.

What a worker sends counts only under the attempt the API gave out (``Attempt``), so a late
page from a worker given up for dead is dropped, never mixed into another worker's reading.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from managers.jobs.redis_queue import (DISPATCHER, DISPATCHER_TTL_S, GIVEN_BACK, JOB_FUNCTION, RESULTS, RUNNING,
                                       SERIALIZER, WORKERS, Attempt, Heartbeat, connect, dispatcher_id, heartbeat_key,
                                       job_args, queue_name, refuse_other_dispatcher, unpack, unreachable)
from managers.jobs.store import RAW, JobStore
from managers.locks import FileLock
from models.config import AppConfig
from models.i18n import Message, _
from models.jobs import DONE, FAILED, Reader, Waiting, route
from models.result import OCRResult, PageResult

POLL_S = 0.25
BATCH = 100  # results items taken in one turn
KEEP_FAILED_S = 86400
log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, config: AppConfig, store: JobStore):
        self.config, self.store = config, store
        self.wake = threading.Event()  # a job was queued or cancelled: look now
        self.stopped = threading.Event()
        self.me = dispatcher_id(store.path)
        self.redis: redis.Redis | None = None
        self._lock: FileLock | None = None
        self._thread = threading.Thread(target=self._loop, name="jobs-dispatch", daemon=True)

    def start(self, on_restart: str) -> list[str]:
        """Take the store, reach Redis (NotAvailable in one sentence), give up the jobs whose
        workers are gone, and start handing jobs out; the interrupted jobs' ids. Jobs still
        read by live workers go on."""
        self._lock = self.store.take()
        try:
            self.redis = connect(self.config.jobs.redis_url)
            refuse_other_dispatcher(self.redis, self.config.jobs.redis_url, self.me)
            cut = self._turn()
        except BaseException:
            self._lock.release()
            raise
        self._thread.start()
        return cut

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
            with contextlib.suppress(redis.RedisError):  # another API may start at once
                if self.redis.get(DISPATCHER) == self.me.encode():
                    self.redis.delete(DISPATCHER)
        if self._lock is not None:
            self._lock.release()

    def check(self) -> None:
        """NotAvailable in one sentence while Redis does not answer."""
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise unreachable(self.config.jobs.redis_url, exc) from exc

    def workers(self) -> dict[str, Heartbeat]:
        """The live workers by name."""
        names = sorted(name.decode() for name in self.redis.smembers(WORKERS))
        beats = self.redis.mget([heartbeat_key(name) for name in names]) if names else []
        return {name: Heartbeat.loads(beat) for name, beat in zip(names, beats) if beat}

    def _loop(self) -> None:
        down = False
        while not self.stopped.is_set():
            try:
                self._turn()
                down = False
            except redis.RedisError as exc:
                if not down:  # once per outage; submit and /health say it to clients
                    log.warning("%s", unreachable(self.config.jobs.redis_url, exc))
                down = True
            except Exception:
                log.exception("the job dispatcher failed a turn")
            self.wake.wait(POLL_S)
            self.wake.clear()

    def _turn(self) -> list[str]:
        self.redis.set(DISPATCHER, self.me, ex=DISPATCHER_TTL_S)
        # Read before collecting: whatever a worker sent before its RQ job ended is then collected.
        over = self._over(self._attempts())
        self._collect()
        live = self.workers()
        cut = self._reconcile(live, over)
        self._route(live)
        return cut

    # --- 1. collect ----------------------------------------------------------------------

    def _collect(self) -> None:
        """Every item sent so far into the store, a batch at a time."""
        while items := self.redis.lrange(RESULTS, 0, BATCH - 1):
            attempts = self._attempts()
            for item in items:
                try:
                    self._apply(item, attempts)
                except (ValueError, KeyError):  # not an item a worker of this version sends: dropped
                    log.exception("a malformed item in %s was dropped", RESULTS)
            self.redis.ltrim(RESULTS, len(items), -1)

    def _apply(self, item: bytes, attempts: dict[str, Attempt]) -> None:
        header, payload = unpack(item)
        job_id = header["job"]
        attempt = attempts.get(job_id)
        if attempt is None or attempt.token != header["token"]:
            return  # sent under an attempt given up: another worker reads the job now
        if header["kind"] == "page":
            self.store.page_read(job_id, header["n"], PageResult.model_validate_json(header["page"]),
                                 payload or None)
        elif header["kind"] == "document":
            self.store.document_read(job_id, header["n"], OCRResult.model_validate_json(header["result"]))
        else:
            self._end(job_id, header["state"], header.get("error"))
            del attempts[job_id]

    def _end(self, job_id: str, state: str, error: dict | None) -> None:
        if state in (DONE, FAILED):
            self.store.finish(job_id, state, Message.of(error) if error else None)
        elif state == GIVEN_BACK:
            self.store.interrupt(job_id, requeue=True)
        self.redis.hdel(RUNNING, job_id)

    def _attempts(self) -> dict[str, Attempt]:
        return {job.decode(): Attempt.loads(raw) for job, raw in self.redis.hgetall(RUNNING).items()}

    # --- 2. reconcile --------------------------------------------------------------------

    def _over(self, attempts: dict[str, Attempt]) -> dict[str, str | None]:
        """The jobs whose RQ job is no longer queued or started: its worker is done with it
        (finished jobs are not kept), lost it (its queue removed), or failed it (an error RQ
        caught: the reason)."""
        over = {}
        for job_id, attempt in attempts.items():
            rq_job = Job(attempt.token, connection=self.redis)
            try:
                status = rq_job.get_status()
            except InvalidJobOperation:
                status = None
            if status == JobStatus.FAILED:
                result = rq_job.latest_result()
                lines = (result.exc_string or "").strip().splitlines() if result else []
                over[job_id] = lines[-1] if lines else "?"
            elif status not in (JobStatus.QUEUED, JobStatus.STARTED):
                over[job_id] = None
        return over

    def _reconcile(self, live: dict[str, Heartbeat], over: dict[str, str | None]) -> list[str]:
        on_restart = self.config.jobs.on_restart
        attempts, cut = self._attempts(), []
        for job_id, worker in self.store.running().items():
            attempt = attempts.get(job_id)
            beat = live.get(attempt.worker) if attempt else None
            gone = attempt is None or attempt.worker != worker or beat is None or beat.instance != attempt.instance
            if not gone and over.get(job_id):  # it would fail again on every try: not requeued
                self.store.finish(job_id, FAILED, _("Worker {worker} could not run the job ({reason}); see its log.",
                                                    worker=worker, reason=over[job_id]))
            elif (gone or job_id in over) and self.store.give_back(job_id, on_restart):
                log.warning("job %s: its worker %s is gone or lost it; interrupted (jobs.on_restart: %s)", job_id,
                            worker, on_restart)
                cut.append(job_id)
        running = self.store.running()
        withdrawn = [job_id for job_id in attempts if job_id not in running]
        if withdrawn:
            self.redis.hdel(RUNNING, *withdrawn)
        for job_id in withdrawn:
            self._unqueue(attempts[job_id])
        for name in {name.decode() for name in self.redis.smembers(WORKERS)} - set(live):
            self._bury(name)
        return cut

    def _bury(self, name: str) -> None:
        """Remove a dead worker's queue with every job it held, started ones included."""
        queue = Queue(queue_name(name), connection=self.redis)
        for registry in (queue.started_job_registry, queue.failed_job_registry, queue.finished_job_registry,
                         queue.canceled_job_registry):
            for rq_id in registry.get_job_ids(cleanup=False):
                with contextlib.suppress(NoSuchJobError):
                    Job.fetch(rq_id, connection=self.redis).delete()
            self.redis.delete(registry.key)
        queue.delete(delete_jobs=True)
        self.redis.srem(WORKERS, name)

    # --- 3. route ------------------------------------------------------------------------

    def _route(self, live: dict[str, Heartbeat]) -> None:
        waiting = self.store.waiting()
        runnable = set().union(*(beat.can_run for beat in live.values()))
        if waiting:  # a job no live worker can run waits, and says so
            self.store.notes({job.id: None if (job.mode, job.model) in runnable else _(
                "No live worker can run {model} in {mode} mode; the job waits for one that can (cli.py worker on a "
                "machine with it).", model=job.model, mode=job.mode) for job in waiting})
        busy = set(self.store.running().values())
        idle = [Reader(name, beat.holding, beat.can_run) for name, beat in live.items() if name not in busy]
        if not idle:
            return
        for job, reader in route(waiting, idle, time.time(), self.config.jobs.max_wait_s):
            self._give(job, reader.name, live[reader.name])

    def _give(self, waiting: Waiting, worker: str, beat: Heartbeat) -> None:
        job = self.store.get(waiting.id)
        if job is None:
            return
        token = uuid.uuid4().hex
        # The attempt first, so the worker finds it; the claim last: a cancel that came
        # first leaves the job unclaimed, and its attempt is withdrawn before it is read.
        self.redis.hset(RUNNING, job.id, Attempt(worker, beat.instance, token).dumps())
        data = {d.n: self.store.document(job.id, d.n) for d in job.documents}
        kept = {d.n: {index: page.model_dump_json(context=RAW) for index, page in self.store.pages(job.id, d.n).items()}
                for d in job.documents}
        queue = Queue(queue_name(worker), connection=self.redis, serializer=SERIALIZER)
        queue.enqueue_call(JOB_FUNCTION, args=job_args(job.id, token, job.spec, job.documents, data, kept),
                           job_id=token, timeout=-1, result_ttl=0, failure_ttl=KEEP_FAILED_S)
        if self.store.claim(job.id, worker):
            log.info("job %s: to worker %s", job.id, worker)
            return
        self.redis.hdel(RUNNING, job.id)
        self._unqueue(Attempt(worker, beat.instance, token))

    def _unqueue(self, attempt: Attempt) -> None:
        """An attempt withdrawn before its worker took it is never taken, so the worker does not
        switch its model for a job nobody wants, and its documents leave Redis with it."""
        if Queue(queue_name(attempt.worker), connection=self.redis).remove(attempt.token):
            Job(attempt.token, connection=self.redis).delete()
