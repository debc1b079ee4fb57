"""The API's jobs, whatever runs them: accept, look up, cancel, follow, collect results.

The store (managers/jobs/store.py) is the record on the API's machine whichever backend
reads the jobs: the embedded worker (managers/jobs/local.py) reads them in this process;
with ``jobs.backend: redis`` they are handed to ``cli.py worker`` processes through Redis
(managers/jobs/redis_queue.py) and what those read comes back into the store.

A job belongs to the API key that submitted it: another key is told there is no such job,
so ids never leak whose documents exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from managers.jobs.local import LocalWorker
from managers.jobs.store import Event, Job, JobStore, Spec
from models.config import data_dir
from models.errors import Busy, JobError
from models.i18n import _, n_
from models.result import OCRResult

if TYPE_CHECKING:
    from managers.runtime import Runtime


class Jobs:
    def __init__(self, runtime: Runtime, directory: Path | None = None):
        self.config = runtime.config
        self.store = JobStore(directory or data_dir() / "jobs")
        self.worker = LocalWorker(runtime, self.store)

    def start(self) -> list[str]:
        """Start reading; the ids of jobs a dead server left interrupted."""
        if self.config.jobs.keep_days:
            self.store.purge(self.config.jobs.keep_days * 86400)
        return self.worker.start(self.config.jobs.on_restart)

    def stop(self) -> None:
        self.worker.stop()
        self.store.close()

    def submit(self, owner: str, spec: Spec, documents: list[tuple[str, bytes, list[int]]]) -> Job:
        settings, api = self.config.jobs, self.config.api
        job = self.store.add(owner, spec, documents, limit=settings.queue_size, owner_limit=api.per_key_jobs)
        if job is None and self.store.unfinished() >= settings.queue_size:
            raise Busy(n_("The job queue is full ({n} job unfinished); try again in a while.",
                          "The job queue is full ({n} jobs unfinished); try again in a while.", settings.queue_size),
                       api.retry_after_s)
        if job is None:
            raise Busy(n_("This API key has {n} job unfinished, its limit (api.per_key_jobs); wait for one to end.",
                          "This API key has {n} jobs unfinished, its limit (api.per_key_jobs); wait for one to end.",
                          api.per_key_jobs), api.retry_after_s)
        self.worker.wake.set()
        return job

    def get(self, owner: str, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None or job.owner != owner:
            raise JobError(_("There is no job {id}; it may have been removed after jobs.keep_days.", id=job_id))
        return job

    def cancel(self, owner: str, job_id: str) -> Job:
        self.get(owner, job_id)
        return self.store.cancel(job_id)

    def events(self, owner: str, job_id: str, after: int = 0) -> list[Event]:
        self.get(owner, job_id)
        return self.store.events(job_id, after)

    def results(self, owner: str, job_id: str) -> list[tuple[str, OCRResult]]:
        """(document name, result with the pages read so far) for each document of the job."""
        job = self.get(owner, job_id)
        return [(document.name, self.store.result(job, document.n)) for document in job.documents]
