"""The embedded worker (``jobs.backend: sqlite``): a thread of the API's process that reads
queued jobs one at a time, model by model (models/jobs.py ``next_job``), through the
process's runtime.

It holds the store's reader lock for its life (``JobStore.take``); a server killed with
``kill -9`` leaves nothing behind, and the next one interrupts what it was reading and
resumes it (``jobs.on_restart``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from managers.jobs.store import JobStore
from managers.jobs.work import Sink, run_job
from managers.locks import FileLock
from models.jobs import next_job
from models.result import OCRResult, PageResult

if TYPE_CHECKING:
    from managers.runtime import Runtime

IDLE_POLL_S = 0.5
log = logging.getLogger(__name__)


class StoreSink(Sink):
    """A job read in this process: pages go straight into the store."""

    def __init__(self, store: JobStore, job_id: str, stopping: threading.Event | None = None):
        self.store, self.job_id = store, job_id
        self.stopping = stopping or threading.Event()

    def document(self, n: int) -> bytes:
        return self.store.document(self.job_id, n)

    def kept(self, n: int) -> dict[int, PageResult]:
        return self.store.pages(self.job_id, n)

    def page_read(self, n: int, page: PageResult, prepared: bytes | None) -> bool:
        # A page read while the server stops may have failed because the model is being
        # unloaded under it: not kept, it is read again when the job resumes.
        return not self.stopping.is_set() and self.store.page_read(self.job_id, n, page, prepared)

    def document_read(self, n: int, result: OCRResult) -> None:
        self.store.document_read(self.job_id, n, result)

    def cancelled(self) -> bool:
        return self.stopping.is_set() or self.store.state(self.job_id) != "running"


class LocalWorker:
    def __init__(self, runtime: Runtime, store: JobStore):
        self.runtime, self.store = runtime, store
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.wake = threading.Event()  # a job was queued: look now, not at the next poll
        self.stopped = threading.Event()
        self._lock: FileLock | None = None
        self._thread = threading.Thread(target=self._loop, name="jobs-worker", daemon=True)

    def start(self, on_restart: str) -> list[str]:
        """Take the store (refused while another server has it), interrupt what a dead
        server was reading, and start reading; the interrupted jobs' ids."""
        self._lock = self.store.take()
        cut = self.store.recover(on_restart)
        self._thread.start()
        return cut

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        self._thread.join(timeout=5)
        if self._lock is not None:
            self._lock.release()

    def holding(self) -> tuple[str, str] | None:
        holder = self.runtime.arbiter.holder()
        return (holder.mode, holder.model) if holder else None

    def _loop(self) -> None:
        config = self.runtime.config
        while not self.stopped.is_set():
            try:
                job = next_job(self.store.waiting(), self.holding(), time.time(), config.jobs.max_wait_s)
                if job is not None:
                    if self.store.claim(job.id, self.name):  # not when cancelled meanwhile
                        self._read(job.id)
                    continue
            except Exception:  # a store failing for a moment must not end the worker: jobs would wait forever
                log.exception("the job worker failed; it goes on")
            self.wake.wait(IDLE_POLL_S)
            self.wake.clear()

    def _read(self, job_id: str) -> None:
        job = self.store.get(job_id)
        ended = run_job(self.runtime, job.spec, job.documents, StoreSink(self.store, job_id, self.stopped))
        if ended is not None:
            self.store.finish(job_id, *ended)
        elif self.stopped.is_set():  # the server stops: the job is handed back now, its pages kept
            self.store.give_back(job_id, self.runtime.config.jobs.on_restart)
        # else its cancel already made it final
