"""The job store (real SQLite): a page as preparation turned it is kept with the page itself;
a job handed back keeps its place in the queue; the uploads are this user's only; old jobs go."""

import stat
import time
from types import SimpleNamespace

from managers.jobs import service
from managers.jobs.service import Jobs
from managers.jobs.store import JobStore, Spec
from models.result import PageResult


def test_a_prepared_page_is_kept_with_its_page_and_goes_with_it(tmp_path):
    store = JobStore(tmp_path)
    job = store.add("local", Spec("tesseract", "cpu", "text", needs_gpu=False), [("a.png", b"document", [0, 1])])
    assert store.claim(job.id, "worker")
    assert store.page_read(job.id, 0, PageResult(index=0), b"turned page 1")
    assert store.page_read(job.id, 0, PageResult(index=1), None)  # a page preparation left alone
    assert store.prepared(job.id, 0) == {0: b"turned page 1"}

    # Requeued to be read from the start, a job keeps no page, and no prepared page, of before.
    assert store.interrupt(job.id, requeue=True, resume=False)
    assert store.pages(job.id, 0) == {} and store.prepared(job.id, 0) == {}

    assert store.claim(job.id, "worker") and store.page_read(job.id, 0, PageResult(index=1), b"turned page 2")
    store.cancel(job.id)
    assert not store.page_read(job.id, 0, PageResult(index=0), b"too late")  # a cancelled job keeps nothing new
    assert store.prepared(job.id, 0) == {1: b"turned page 2"}


def test_a_job_handed_back_keeps_its_place_in_the_queue(tmp_path):
    store = JobStore(tmp_path)
    spec = Spec("tesseract", "cpu", "text", needs_gpu=False)
    first = store.add("local", spec, [("a.png", b"document", [0])])
    later = store.add("local", spec, [("b.png", b"document", [0])])
    assert store.claim(first.id, "worker") and store.interrupt(first.id, requeue=True)
    waiting = sorted(store.waiting(), key=lambda job: job.queued_at)
    assert [job.id for job in waiting] == [first.id, later.id]
    assert waiting[0].queued_at == first.created


def test_the_uploads_are_readable_by_this_user_only(tmp_path):
    JobStore(tmp_path / "jobs")
    assert stat.S_IMODE((tmp_path / "jobs").stat().st_mode) == 0o700


def test_old_jobs_are_removed_while_the_server_stays_up(tmp_path, config, monkeypatch):
    config = config.model_copy(update={"jobs": config.jobs.model_copy(update={"keep_days": 1})})
    jobs = Jobs(SimpleNamespace(config=config, arbiter=SimpleNamespace(holder=lambda: None)), tmp_path)
    spec = Spec("tesseract", "cpu", "text", needs_gpu=False)
    old = jobs.submit("local", spec, [("a.png", b"document", [0])])
    jobs.store.cancel(old.id)
    with jobs.store._conn() as conn:  # it ended two days ago
        conn.execute("UPDATE jobs SET finished = ? WHERE id = ?", (time.time() - 2 * 86400, old.id))
    jobs._purge()  # as at start
    assert jobs.store.get(old.id) is None

    old = jobs.submit("local", spec, [("a.png", b"document", [0])])
    jobs.store.cancel(old.id)
    with jobs.store._conn() as conn:
        conn.execute("UPDATE jobs SET finished = ? WHERE id = ?", (time.time() - 2 * 86400, old.id))
    jobs.submit("local", spec, [("b.png", b"document", [0])])  # within the hour: not yet
    assert jobs.store.get(old.id) is not None
    monkeypatch.setattr(service, "PURGE_EVERY_S", 0)
    jobs.submit("local", spec, [("c.png", b"document", [0])])  # an hour on, the next submit removes it
    assert jobs.store.get(old.id) is None
