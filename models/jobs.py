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

``route`` is the same decision for several machines (``jobs.backend: redis``): each
``cli.py worker`` holds a model of its own, so a job goes to the idle worker that holds its
model; a worker holding nothing, or a model no waiting job needs, takes what is left.
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
    queued_at: float  # when the job was made: one handed back (interrupted) keeps its place
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


@dataclass(frozen=True)
class Reader:
    """A live, idle ``cli.py worker`` as the router sees it."""

    name: str
    holding: tuple[str, str] | None  # (mode, model) it holds or last read; None: nothing yet
    can_run: frozenset[tuple[str, str]]  # the (mode, model) pairs its machine can run


def route(waiting: Sequence[Waiting], idle: Sequence[Reader], now: float,
          max_wait_s: float) -> list[tuple[Waiting, Reader]]:
    """Which idle worker reads which queued job, at most one job each.

    Jobs are taken oldest first, those that waited ``max_wait_s`` before all others. A job
    goes to an idle worker that holds its model; failing that, a job that waited too long
    takes any idle worker that can run it, and the others take, oldest first, the idle
    workers left whose model no waiting job needs (one holding nothing first), as one machine
    goes on to the oldest job once its model's jobs are done. A job no idle worker can run
    stays queued."""
    by_age = sorted(waiting, key=lambda job: (job.queued_at, job.id))
    order = ([job for job in by_age if now - job.queued_at >= max_wait_s]
             + [job for job in by_age if now - job.queued_at < max_wait_s])
    free = sorted(idle, key=lambda reader: reader.name)
    routed: list[tuple[Waiting, Reader]] = []
    later: list[Waiting] = []

    def give(job: Waiting, reader: Reader) -> None:
        routed.append((job, reader))
        free.remove(reader)

    for job in order:
        holder = next((r for r in free if r.holding == (job.mode, job.model)), None)
        if holder is not None:
            give(job, holder)
        elif now - job.queued_at >= max_wait_s and (reader := _spare(job, free, order, routed)):
            give(job, reader)
        else:
            later.append(job)
    for job in later:  # no idle holder: a spare worker switches to it
        if reader := _spare(job, free, order, routed):
            give(job, reader)
    return routed


def _spare(job: Waiting, free: list[Reader], order: list[Waiting],
           routed: list[tuple[Waiting, Reader]]) -> Reader | None:
    """The idle worker able to run ``job`` that is best spent on it: one holding nothing, then
    one whose model no other waiting job needs, then any (which only a job that waited too
    long meets: every other job took its model's idle holder first)."""
    taken = {job.id for job, _reader in routed} | {job.id}
    needed = {(other.mode, other.model) for other in order if other.id not in taken}
    able = [r for r in free if (job.mode, job.model) in r.can_run]
    ranked = sorted(able, key=lambda r: (r.holding is not None, r.holding in needed))
    return ranked[0] if ranked else None
