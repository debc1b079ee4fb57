"""A request waiting for its job is told of each change once it is committed (real SQLite):
/v1/ocr and the event streams wake on it instead of polling the database."""

import asyncio
from types import SimpleNamespace

from managers.jobs.store import JobStore, Spec
from models.result import PageResult
from routes.jobs import changes, next_change


def test_every_change_is_told_after_it_is_committed_and_only_while_watched(tmp_path):
    store = JobStore(tmp_path)
    job = store.add("local", Spec("tesseract", "cpu", "text", needs_gpu=False), [("a.png", b"document", [0, 1])])
    other = store.add("local", Spec("tesseract", "cpu", "text", needs_gpu=False), [("b.png", b"document", [0])])
    seen = []

    def told() -> None:  # another connection: it sees only what was committed
        seen.append((JobStore(tmp_path).state(job.id), len(JobStore(tmp_path).pages(job.id, 0))))

    with store.watchers.watch(job.id, told):
        assert store.claim(other.id, "worker")  # another job's change is not this job's news
        assert store.claim(job.id, "worker")
        assert store.page_read(job.id, 0, PageResult(index=0))
        assert store.interrupt(job.id, requeue=True)
        assert store.claim(job.id, "worker")
        assert store.page_read(job.id, 0, PageResult(index=1))
        assert store.finish(job.id, "done")
        assert not store.finish(job.id, "done")  # no change, no news
        store.cancel(job.id)  # an ended job is left as it is
    assert seen == [("running", 0), ("running", 1), ("queued", 1), ("running", 1), ("running", 2), ("done", 2)]

    third = store.add("local", Spec("tesseract", "cpu", "text", needs_gpu=False), [("c.png", b"document", [0])])
    with store.watchers.watch(third.id, lambda: seen.append("cancelled")):
        store.cancel(third.id)
    assert seen[-1] == "cancelled" and store.watchers._calls == {}  # no watch outlives its request


def test_a_waiting_request_is_woken_from_the_writers_thread(tmp_path):
    store = JobStore(tmp_path)
    job = store.add("local", Spec("tesseract", "cpu", "text", needs_gpu=False), [("a.png", b"document", [0])])

    async def wait() -> None:
        with changes(SimpleNamespace(store=store), job.id) as changed:
            assert not changed.is_set()
            await asyncio.to_thread(store.claim, job.id, "worker")  # the worker's thread
            assert changed.is_set()  # its news came before its answer
            await next_change(changed, 60)  # returns at once: the change is there
            assert not changed.is_set()

    asyncio.run(wait())
