"""What an API job is, and which queued job goes next.

A job is one request to read documents with one choice (model, mode, task, template): its
states are written here once, for the store (managers/jobs/store.py), the workers and the
API's answers alike.

    queued ──► running ──► done | failed | cancelled
       ▲          │
       └── interrupted ◄┘  (the server or worker died mid-job; pages read are kept)

``next_job`` is the scheduling decision, pure so it is tested without a server: jobs go
model by model, the way llama-swap batches queued requests, so the GPU does not switch back
and forth (A A B B, not A B A B); a job that waited ``max_wait_s`` goes next whatever the GPU
holds, so no job starves behind a stream of jobs for the loaded model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.i18n import _

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "done", "failed", "cancelled", "interrupted")
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
FINAL = frozenset({DONE, FAILED, CANCELLED})
UNFINISHED = frozenset({QUEUED, RUNNING, INTERRUPTED})
STATE_WORDS = {QUEUED: _("queued"), RUNNING: _("running"), DONE: _("done"), FAILED: _("failed"),
               CANCELLED: _("cancelled"), INTERRUPTED: _("interrupted")}


@dataclass(frozen=True)
class Waiting:
    """A queued job as the scheduler sees it."""

    id: str
    model: str
    mode: str
    queued_at: float  # when it entered the queue (again, after an interruption)
    needs_gpu: bool  # False: Tesseract or a remote endpoint, which never switch the GPU


def next_job(waiting: Sequence[Waiting], holding: tuple[str, str] | None, now: float,
             max_wait_s: float) -> Waiting | None:
    """The job to read next: the oldest that waited ``max_wait_s`` or more; else the oldest
    that needs no change of what the GPU holds (``holding``: (mode, model), or None); else
    the oldest of all, whose model the jobs after it then follow."""
    if not waiting:
        return None
    by_age = sorted(waiting, key=lambda job: (job.queued_at, job.id))
    starved = [job for job in by_age if now - job.queued_at >= max_wait_s]
    if starved:
        return starved[0]
    if holding is None:
        return by_age[0]
    same = [job for job in by_age if not job.needs_gpu or (job.mode, job.model) == holding]
    return same[0] if same else by_age[0]
