"""What the job store costs per operation (real SQLite): its WAL is kept between operations
(deleting and making it again took two syncs and an unlink each), and only what a client
was told — a job accepted, a job cancelled — is synced before the answer."""

import contextlib

from managers.jobs.store import JobStore, Spec

FULL, NORMAL = 2, 1  # PRAGMA synchronous


def test_the_wal_stays_between_operations_and_only_promises_are_synced_at_once(tmp_path):
    store = JobStore(tmp_path)
    synced = []  # PRAGMA synchronous of every connection an operation used
    opened = store._conn

    def conn(*args, **kwargs):
        with opened(*args, **kwargs) as connection:
            synced.append(connection.execute("PRAGMA synchronous").fetchone()[0])
            yield connection

    store._conn = contextlib.contextmanager(conn)
    spec = Spec("tesseract", "cpu", "text", needs_gpu=False)

    def levels(operation, *args) -> set[int]:
        synced.clear()
        operation(*args)
        return set(synced)

    job = store.add("local", spec, [("a.png", b"document", [0, 1])])
    assert FULL in levels(store.add, "local", spec, [("b.png", b"document", [0])])  # a 202 is promised
    assert levels(store.claim, job.id, "worker") == {NORMAL}
    assert store.path.with_name("jobs.sqlite3-wal").exists()  # not checkpointed away by the last close
    assert FULL in levels(store.cancel, job.id)
    store.close()
    assert not store.path.with_name("jobs.sqlite3-wal").exists()  # the store's end checkpoints it
    assert JobStore(tmp_path).get(job.id).state == "cancelled"  # nothing was lost by it
