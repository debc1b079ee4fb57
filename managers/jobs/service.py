"""The API's jobs, whatever runs them: accept, look up, cancel, follow, collect results.

The store (managers/jobs/store.py) is the record on the API's machine whichever backend
reads the jobs: the embedded worker (managers/jobs/local.py) reads them in this process;
with ``jobs.backend: redis`` the dispatcher (managers/jobs/dispatch.py) hands them to
``cli.py worker`` processes through Redis and brings what those read back into the store.

A job belongs to the API key that submitted it: another key is told there is no such job,
so ids never leak whose documents exist.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from managers.jobs.dispatch import Dispatcher
from managers.jobs.local import LocalWorker
from managers.jobs.store import Event, Job, JobStore, Spec
from models.config import data_dir
from models.errors import Busy, JobError, Superseded
from models.i18n import _, n_
from models.jobs import STATE_WORDS
from models.result import OCRResult

if TYPE_CHECKING:
    from managers.runtime import Runtime


def jobs_dir() -> Path:
    """Where the job store lives by default: ``jobs/`` in the data dir."""
    return data_dir() / "jobs"


PURGE_EVERY_S = 3600


class Jobs:
    def __init__(self, runtime: Runtime, directory: Path | None = None):
        self._purged = 0.0
        self.config = runtime.config
        self.store = JobStore(directory or jobs_dir(), self.config.jobs.max_interruptions)
        self.worker = (Dispatcher(self.config, self.store) if self.config.jobs.backend == "redis"
                       else LocalWorker(runtime, self.store))

    def start(self) -> list[str]:
        """Start reading; the ids of jobs a dead server left interrupted."""
        self._purge()
        return self.worker.start(self.config.jobs.on_restart)

    def _purge(self) -> None:
        """Remove jobs past jobs.keep_days: at start and then at most hourly, on the next
        submit, so a server that stays up for weeks keeps to it too."""
        if self.config.jobs.keep_days:
            self._purged = time.monotonic()
            self.store.purge(self.config.jobs.keep_days * 86400)

    def stop(self) -> None:
        self.worker.stop()
        self.store.close()

    def submit(self, owner: str, spec: Spec, documents: list[tuple[str, bytes, list[int]]], chats: int = 0) -> Job:
        """Keep a new job; Busy when the queue is full, or the owner's unfinished jobs and its
        ``chats`` in flight reach api.per_key_jobs."""
        settings, api = self.config.jobs, self.config.api
        if time.monotonic() - self._purged > PURGE_EVERY_S:
            self._purge()
        if isinstance(self.worker, Dispatcher):
            self.worker.check()  # a job no worker could be handed is refused now, not left waiting
        job = self.store.add(owner, spec, documents, limit=settings.queue_size, owner_limit=api.per_key_jobs - chats)
        if job is None and self.store.unfinished() >= settings.queue_size:
            raise Busy(n_("The job queue is full ({n} job unfinished); try again in a while.",
                          "The job queue is full ({n} jobs unfinished); try again in a while.", settings.queue_size),
                       api.retry_after_s)
        if job is None:
            raise self.owner_busy()
        self.worker.wake.set()
        return job

    def owner_busy(self) -> Busy:
        api = self.config.api
        return Busy(n_("This API key has {n} job or chat unfinished, its limit (api.per_key_jobs); wait for it to end.",
                       "This API key has {n} jobs and chats unfinished, its limit (api.per_key_jobs); wait for one "
                       "to end.", api.per_key_jobs), api.retry_after_s)

    def get(self, owner: str, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None or job.owner != owner:
            raise JobError(_("There is no job {id}; it may have been removed after jobs.keep_days.", id=job_id))
        return job

    def cancel(self, owner: str, job_id: str) -> Job:
        self.get(owner, job_id)
        job = self.store.cancel(job_id)
        self.worker.wake.set()  # the dispatcher withdraws the job from its worker at once
        return job

    def resume(self, owner: str, job_id: str) -> Job:
        """Queue an interrupted job again from its first unread page."""
        job = self.get(owner, job_id)
        if not self.store.resume(job_id):
            raise Superseded(_("The job is {state}, not interrupted; only an interrupted job is resumed.",
                               state=STATE_WORDS[job.state]))
        self.worker.wake.set()
        return self.store.get(job_id)

    def events(self, owner: str, job_id: str, after: int = 0) -> list[Event]:
        self.get(owner, job_id)
        return self.store.events(job_id, after)

    def results(self, owner: str, job_id: str) -> list[tuple[str, OCRResult]]:
        """(document name, result with the pages read so far) for each document of the job."""
        job = self.get(owner, job_id)
        return [(document.name, self.store.result(job, document.n)) for document in job.documents]
