"""The embedded worker (managers/jobs/local.py) when something other than the job goes wrong:
a model change the job waited on is cancelled by someone else, or the store fails for a
moment. A real store and the real worker loop; only the reading is replaced, by a function
that fails as the runner would."""

from __future__ import annotations

import sqlite3
import threading
import time
from types import SimpleNamespace

import pytest

from managers.jobs import work
from managers.jobs.local import LocalWorker
from managers.jobs.store import JobStore, Spec
from models.errors import Cancelled
from models.i18n import _

PAGE = [("a.png", b"not read", [0])]


@pytest.fixture
def store(tmp_path):
    return JobStore(tmp_path / "jobs")


def ended(store: JobStore, job_id: str) -> str:
    deadline = time.monotonic() + 30
    while store.state(job_id) in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.02)
    return store.state(job_id)


def worker_for(store: JobStore, config) -> LocalWorker:
    worker = LocalWorker(SimpleNamespace(config=config, arbiter=SimpleNamespace(holder=lambda: None)), store)
    worker.start("resume")
    return worker


def test_a_cancel_that_is_not_the_jobs_own_fails_the_job_instead_of_leaving_it_running(store, config, monkeypatch):
    """Another user cancelled the model change this job waited on: the runner raises
    Cancelled, but nobody cancelled the job; it must end, not stay running until a restart."""
    def cancelled_elsewhere(*_args):
        raise Cancelled(_("Cancelled while the model was being made ready."))

    monkeypatch.setattr(work, "read_job", cancelled_elsewhere)
    job = store.add("local", Spec("qwen3_vl_2b", "vllm"), PAGE)
    worker = worker_for(store, config)
    try:
        assert ended(store, job.id) == "failed"
    finally:
        worker.stop()
    assert store.get(job.id).error == "Cancelled while the model was being made ready."


def test_a_job_cancelled_by_its_client_stays_cancelled(store, config, monkeypatch):
    def cancelled_by_client(_runtime, _spec, _documents, sink):
        store.cancel(sink.job_id)
        raise Cancelled(_("The job was cancelled."))

    monkeypatch.setattr(work, "read_job", cancelled_by_client)
    job = store.add("local", Spec("tesseract", "cpu", needs_gpu=False), PAGE)
    worker = worker_for(store, config)
    try:
        assert ended(store, job.id) == "cancelled"
    finally:
        worker.stop()
    assert store.get(job.id).error is None


def test_a_store_that_fails_for_a_moment_does_not_stop_the_worker(store, config, monkeypatch):
    """SQLite busy past its timeout, a full disk for a moment: the worker says so in its log
    and goes on, or every job accepted after it would wait forever."""
    read = threading.Event()
    monkeypatch.setattr(work, "read_job", lambda *_args: read.set())
    real, failures = store.waiting, iter([sqlite3.OperationalError("database is locked")] * 2)

    def flaky():
        failure = next(failures, None)
        if failure:
            raise failure
        return real()

    monkeypatch.setattr(store, "waiting", flaky)
    worker = worker_for(store, config)
    try:
        job = store.add("local", Spec("tesseract", "cpu", needs_gpu=False), PAGE)
        worker.wake.set()
        assert ended(store, job.id) == "done" and read.is_set()
    finally:
        worker.stop()
