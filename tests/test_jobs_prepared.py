"""The job store keeps a page as preparation turned it with the page itself (real SQLite)."""

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
