"""The embedded worker (``jobs.backend: sqlite``): a thread of the API's process that reads
queued jobs one at a time, model by model (models/jobs.py ``next_job``), through the
process's runtime.

One server reads a job store: the worker holds ``worker.lock`` beside the database for its
life, so a second server on the same data dir is refused in one sentence instead of
declaring the first one's jobs interrupted. The lock is a kernel lock, so a server killed
with ``kill -9`` leaves nothing behind; the next one interrupts what it was reading and
resumes it (``jobs.on_restart``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from managers.jobs.store import JobStore
from managers.jobs.work import Sink, read_job
from managers.locks import FileLock, held_by_someone
from models.errors import ChatVLMError, ConfigError
from models.i18n import _
from models.jobs import DONE, FAILED, next_job
from models.result import OCRResult, PageResult

if TYPE_CHECKING:
    from managers.runtime import Runtime

IDLE_POLL_S = 0.5
LOCK_NAME = "worker.lock"
log = logging.getLogger(__name__)


def _taken(directory: Path) -> ConfigError:
    return ConfigError(_("Another API server reads the jobs in {path}; stop it, or give this one a data dir of its "
                         "own (CHATVLMLLM_DATA_DIR).", path=str(directory)))


def refuse_if_taken(directory: Path) -> None:
    """Refuse a second server on ``directory`` before it starts, so api.py says so in one
    sentence instead of uvicorn's trace of a failed startup (``start`` still decides)."""
    if held_by_someone(directory / LOCK_NAME):
        raise _taken(directory)


class StoreSink(Sink):
    """A job read in this process: pages go straight into the store."""

    def __init__(self, store: JobStore, job_id: str):
        self.store, self.job_id = store, job_id

    def document(self, n: int) -> bytes:
        return self.store.document(self.job_id, n)

    def kept(self, n: int) -> dict[int, PageResult]:
        return self.store.pages(self.job_id, n)

    def page_read(self, n: int, page: PageResult, prepared: bytes | None) -> bool:
        return self.store.page_read(self.job_id, n, page, prepared)

    def document_read(self, n: int, result: OCRResult) -> None:
        self.store.document_read(self.job_id, n, result)

    def cancelled(self) -> bool:
        return self.store.state(self.job_id) != "running"


class LocalWorker:
    def __init__(self, runtime: Runtime, store: JobStore):
        self.runtime, self.store = runtime, store
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.wake = threading.Event()  # a job was queued: look now, not at the next poll
        self.stopped = threading.Event()
        self._lock = FileLock(store.path.with_name(LOCK_NAME))
        self._thread = threading.Thread(target=self._loop, name="jobs-worker", daemon=True)

    def start(self, on_restart: str) -> list[str]:
        """Take the store (refused while another server has it), interrupt what a dead
        server was reading, and start reading; the interrupted jobs' ids."""
        if not self._lock.acquire(blocking=False):
            raise _taken(self.store.path.parent)
        cut = self.store.recover(on_restart)
        self._thread.start()
        return cut

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        self._thread.join(timeout=5)
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
        try:
            read_job(self.runtime, job.spec, job.documents, StoreSink(self.store, job_id))
        except ChatVLMError as exc:
            # Cancelled too: the job's own cancel made it final already, which finish leaves as
            # it is; a cancel from elsewhere (a model change it waited on, cancelled by another
            # user) must not leave it running.
            self.store.finish(job_id, FAILED, exc.message)
            return
        except Exception as exc:  # a bug must still end the job with a sentence
            log.exception("job %s failed", job_id)
            self.store.finish(job_id, FAILED, _("The job failed unexpectedly: {reason}", reason=exc))
            return
        self.store.finish(job_id, DONE)


