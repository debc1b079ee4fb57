"""The API's jobs, kept in SQLite so nothing accepted is lost: each job with its documents'
bytes, every page read as soon as it is read, and the events its clients follow.

One database under the data dir (``jobs/jobs.sqlite3``), in WAL mode, written in short
``BEGIN IMMEDIATE`` transactions so the API's request threads, its worker and its Redis
collector never see half a change. Documents are kept as BLOBs beside their job, never as
files named after an upload: no part of a request becomes a path.

A job's state changes only through the guarded UPDATEs here (``claim`` takes a queued job,
``finish`` ends a running one), so a cancel that lands while a worker finishes, or two
workers racing for one job, leave one answer. ``recover`` is for a server starting again:
what it was reading when it died is interrupted, with its pages kept, then resumed,
requeued or left so, as ``jobs.on_restart`` says.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from managers.jobs.watch import Watchers
from managers.locks import FileLock, held_by_someone
from models.errors import ConfigError, JobError
from models.i18n import Message, _, n_
from models.jobs import (CANCELLED, DONE, FAILED, FINAL, INTERRUPTED, QUEUED, RUNNING, UNFINISHED,
                         Waiting)
from models.result import OCRResult, PageResult

BUSY_S = 30
RAW = {"messages": "raw"}
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL,
        started REAL, finished REAL, state TEXT NOT NULL, model TEXT NOT NULL, mode TEXT NOT NULL,
        task TEXT, template TEXT, options TEXT NOT NULL, needs_gpu INTEGER NOT NULL,
        error TEXT, interruptions INTEGER NOT NULL DEFAULT 0, worker TEXT,
        note TEXT)""",  # note: why a queued job waits, while no worker can read it
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created)",
    """CREATE TABLE IF NOT EXISTS documents (
        job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, n INTEGER NOT NULL,
        name TEXT NOT NULL, pages TEXT NOT NULL, data BLOB NOT NULL, result TEXT, PRIMARY KEY (job, n))""",
    """CREATE TABLE IF NOT EXISTS pages (
        job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, n INTEGER NOT NULL,
        page INTEGER NOT NULL, result TEXT NOT NULL, PRIMARY KEY (job, n, page))""",
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        at REAL NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS events_job ON events (job, seq)",
    # Pages as preparation turned or straightened them, which their boxes belong to (PNG).
    """CREATE TABLE IF NOT EXISTS prepared (
        job TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, n INTEGER NOT NULL,
        page INTEGER NOT NULL, png BLOB NOT NULL, PRIMARY KEY (job, n, page))""",
)


@dataclass(frozen=True)
class Spec:
    """What a job reads with: the runner's Choice, as the request gave it."""

    model: str
    mode: str
    task: str | None = None
    template: str | None = None
    hide_header_footer: bool = False
    needs_gpu: bool = True
    box: tuple[int, int, int, int] | None = None  # for a grounding task, in page pixels

    def options(self) -> str:
        return json.dumps({"hide_header_footer": self.hide_header_footer, "box": self.box})


@dataclass
class Document:
    n: int
    name: str
    pages: list[int]  # the page indexes to read, in order
    done: int = 0


@dataclass
class Job:
    id: str
    owner: str  # the API key's name that submitted it
    state: str
    spec: Spec
    created: float
    started: float | None
    finished: float | None
    error: Message | None
    interruptions: int
    worker: str | None
    documents: list[Document] = field(default_factory=list)
    note: Message | None = None  # why it waits, while no worker can read it

    @property
    def pages_total(self) -> int:
        return sum(len(d.pages) for d in self.documents)

    @property
    def pages_done(self) -> int:
        return sum(d.done for d in self.documents)

    @property
    def final(self) -> bool:
        return self.state in FINAL


@dataclass(frozen=True)
class Event:
    seq: int
    job: str
    at: float
    kind: str  # state, page, error
    data: dict


class JobStore:
    def __init__(self, directory: Path, max_interruptions: int | None = None):
        self.max_interruptions = max_interruptions  # past it a job fails instead of being queued again
        # Uploaded documents are kept here: readable by this user only, like api_keys.json.
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        self.path = directory / "jobs.sqlite3"
        self.watchers = Watchers()  # told after each change is committed, never before
        with self._conn(durable=True) as conn:  # the tables exist before the first request needs them
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                conn.execute(statement)
        # Open (and read once, which is when SQLite opens the file) for the store's life: when
        # the last connection closes SQLite checkpoints the WAL and deletes it, which with a
        # connection per operation cost two syncs and an unlink each (bench/api.py: ~100 ms of
        # a small job under load).
        self._keeper = sqlite3.connect(self.path, check_same_thread=False)
        self._keeper.execute("SELECT count(*) FROM jobs").fetchall()

    def close(self) -> None:
        self._keeper.close()

    @contextlib.contextmanager
    def _conn(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one operation. Only SQLite ever opens the file, so closing it
        drops no lock another connection holds (SQLite shares its file per process).

        ``durable``: on the disk before this returns — what a client was told was accepted or
        cancelled. Other changes (a worker's progress) are synced at the next checkpoint: a
        crashed process loses none of them (WAL), a power cut may lose the last ones, which
        leaves a job to read those pages again when it resumes."""
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_S, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from exc
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            with conn:
                yield conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            raise _damaged(self.path, exc) from exc
        finally:
            conn.close()

    def take(self) -> FileLock:
        """The store's reader lock (``worker.lock`` beside the database), taken for the life of
        whoever hands its jobs out — the embedded worker or the Redis dispatcher — so a second
        server on the same data dir is refused in one sentence instead of declaring the first
        one's jobs interrupted. A kernel lock: a server killed with ``kill -9`` leaves nothing."""
        lock = FileLock(self._lock_path)
        if not lock.acquire(blocking=False):
            raise self._taken()
        return lock

    def refuse_if_taken(self) -> None:
        """Refuse a second server before it starts, so api.py says so in one sentence instead
        of uvicorn's trace of a failed startup (``take`` still decides)."""
        if held_by_someone(self._lock_path):
            raise self._taken()

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name("worker.lock")

    def _taken(self) -> ConfigError:
        return ConfigError(_("Another API server reads the jobs in {path}; stop it, or give this one a data dir "
                             "of its own (CHATVLMLLM_DATA_DIR).", path=str(self.path.parent)))

    # --- accepting ---------------------------------------------------------------------

    def add(self, owner: str, spec: Spec, documents: list[tuple[str, bytes, list[int]]],
            limit: int | None = None, owner_limit: int | None = None) -> Job | None:
        """Keep a new queued job with its documents (name, bytes, page indexes); None when
        ``limit`` jobs are unfinished already, or ``owner_limit`` of this owner's, counted in
        the same transaction so concurrent requests never slip past a full queue."""
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._conn(durable=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            if limit is not None and self._unfinished(conn) >= limit:
                return None
            if owner_limit is not None and self._unfinished(conn, owner) >= owner_limit:
                return None
            conn.execute(
                "INSERT INTO jobs (id, owner, created, state, model, mode, task, template, options,"
                " needs_gpu) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (job_id, owner, now, QUEUED, spec.model, spec.mode, spec.task, spec.template, spec.options(),
                 int(spec.needs_gpu)))
            conn.executemany("INSERT INTO documents (job, n, name, pages, data) VALUES (?,?,?,?,?)",
                             [(job_id, n, name, json.dumps(pages), data)
                              for n, (name, data, pages) in enumerate(documents)])
            _event(conn, job_id, "state", {"state": QUEUED})
        return self.get(job_id)

    @staticmethod
    def _unfinished(conn: sqlite3.Connection, owner: str | None = None) -> int:
        marks = ",".join("?" * len(UNFINISHED))
        if owner is None:
            return conn.execute(f"SELECT count(*) FROM jobs WHERE state IN ({marks})", tuple(UNFINISHED)).fetchone()[0]
        return conn.execute(f"SELECT count(*) FROM jobs WHERE state IN ({marks}) AND owner = ?",
                            (*UNFINISHED, owner)).fetchone()[0]

    def unfinished(self, owner: str | None = None) -> int:
        with self._conn() as conn:
            return self._unfinished(conn, owner)

    # --- reading -----------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._conn() as conn:
            row = conn.execute("SELECT id, owner, state, model, mode, task, template, options, needs_gpu, created,"
                               " started, finished, error, interruptions, worker, note FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()
            if row is None:
                return None
            docs = conn.execute(
                "SELECT d.n, d.name, d.pages, (SELECT count(*) FROM pages p WHERE p.job = d.job AND p.n = d.n)"
                " FROM documents d WHERE d.job = ? ORDER BY d.n", (job_id,)).fetchall()
        (id_, owner, state, model, mode, task, template, options, needs_gpu, created, started,
         finished, error, interruptions, worker, note) = row
        options = json.loads(options)
        box = options.get("box")
        spec = Spec(model, mode, task, template, options.get("hide_header_footer", False), bool(needs_gpu),
                    tuple(box) if box else None)
        return Job(id_, owner, state, spec, created, started, finished,
                   Message.of(json.loads(error)) if error else None, interruptions, worker,
                   [Document(n, name, json.loads(pages), done) for n, name, pages, done in docs],
                   Message.of(json.loads(note)) if note else None)

    def document(self, job_id: str, n: int) -> bytes:
        with self._conn() as conn:
            row = conn.execute("SELECT data FROM documents WHERE job = ? AND n = ?", (job_id, n)).fetchone()
        if row is None:
            raise KeyError((job_id, n))
        return row[0]

    def pages(self, job_id: str, n: int) -> dict[int, PageResult]:
        """The pages of document ``n`` read so far, by page index."""
        with self._conn() as conn:
            rows = conn.execute("SELECT page, result FROM pages WHERE job = ? AND n = ? ORDER BY page",
                                (job_id, n)).fetchall()
        return {page: PageResult.model_validate_json(result) for page, result in rows}

    def waiting(self) -> list[Waiting]:
        with self._conn() as conn:
            # A job waits from when it was made: one handed back (interrupted) keeps its place.
            rows = conn.execute("SELECT id, model, mode, created, needs_gpu FROM jobs WHERE state = ?",
                                (QUEUED,)).fetchall()
        return [Waiting(id_, model, mode, created, bool(gpu)) for id_, model, mode, created, gpu in rows]

    def events(self, job_id: str, after: int = 0) -> list[Event]:
        with self._conn() as conn:
            rows = conn.execute("SELECT seq, job, at, kind, data FROM events WHERE job = ? AND seq > ? ORDER BY seq",
                                (job_id, after)).fetchall()
        return [Event(seq, job, at, kind, json.loads(data)) for seq, job, at, kind, data in rows]

    # --- the worker's side ---------------------------------------------------------------

    def claim(self, job_id: str, worker: str) -> bool:
        """Take a queued job for reading; False when it is no longer queued (cancelled, or
        another worker was first)."""
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            taken = conn.execute("UPDATE jobs SET state = ?, started = coalesce(started, ?), worker = ?, note = NULL"
                                 " WHERE id = ? AND state = ?",
                                 (RUNNING, time.time(), worker, job_id, QUEUED)).rowcount
            if taken:
                _event(conn, job_id, "state", {"state": RUNNING, "worker": worker})
        if taken:
            self.watchers.changed(job_id)
        return bool(taken)

    def page_read(self, job_id: str, n: int, page: PageResult, prepared: bytes | None = None) -> bool:
        """Keep a page as soon as it is read, with the page as preparation changed it (PNG)
        where it did, so exports draw its boxes on the page they belong to; False when the
        job is gone or final (a cancel came first), so a worker stops sending pages nobody
        keeps."""
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            state = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if state is None or state[0] != RUNNING:
                return False
            conn.execute("INSERT OR REPLACE INTO pages (job, n, page, result) VALUES (?,?,?,?)",
                         (job_id, n, page.index, page.model_dump_json(context=RAW)))
            if prepared is not None:
                conn.execute("INSERT OR REPLACE INTO prepared (job, n, page, png) VALUES (?,?,?,?)",
                             (job_id, n, page.index, prepared))
            done, total = conn.execute(
                "SELECT (SELECT count(*) FROM pages WHERE job = ?),"
                " (SELECT sum(json_array_length(pages)) FROM documents WHERE job = ?)", (job_id, job_id)).fetchone()
            data = {"document": n, "page": page.number, "pages_done": done, "pages_total": total}
            if page.error:
                data["error"] = page.error.raw()
            _event(conn, job_id, "page", data)
        self.watchers.changed(job_id)
        return True

    def document_read(self, job_id: str, n: int, result: OCRResult) -> None:
        """Keep a document's whole result but its pages (kept one by one): engine, time, fields."""
        header = result.model_copy(update={"pages": []}).model_dump_json(context=RAW)
        with self._conn() as conn:
            conn.execute("UPDATE documents SET result = ? WHERE job = ? AND n = ?", (header, job_id, n))

    def prepared(self, job_id: str, n: int) -> dict[int, bytes]:
        """Document ``n``'s pages as preparation changed them: index → PNG."""
        with self._conn() as conn:
            return dict(conn.execute("SELECT page, png FROM prepared WHERE job = ? AND n = ?", (job_id, n)))

    def result(self, job: Job, n: int) -> OCRResult:
        """Document ``n``'s result with every page read so far, in page order; a document
        not read to its end (cancelled, failed) has no fields."""
        with self._conn() as conn:
            row = conn.execute("SELECT result FROM documents WHERE job = ? AND n = ?", (job.id, n)).fetchone()
        header = (OCRResult.model_validate_json(row[0]) if row and row[0] else
                  OCRResult(model=job.spec.model, engine=job.spec.mode, task=job.spec.task or ""))
        header.pages = [page for _, page in sorted(self.pages(job.id, n).items())]
        return header

    def finish(self, job_id: str, state: str, error: Message | None = None) -> bool:
        """End a running job (done or failed); False when it was cancelled meanwhile."""
        assert state in (DONE, FAILED)
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            ended = conn.execute("UPDATE jobs SET state = ?, finished = ?, error = ? WHERE id = ? AND state = ?",
                                 (state, time.time(), json.dumps(error.raw()) if error else None, job_id,
                                  RUNNING)).rowcount
            if ended:
                _event(conn, job_id, "state", {"state": state, **({"error": error.raw()} if error else {})})
        if ended:
            self.watchers.changed(job_id)
        return bool(ended)

    def interrupt(self, job_id: str, requeue: bool, resume: bool = True) -> bool:
        """A running job whose reader died: interrupted, its pages kept; then queued again
        (``requeue``) from its first unread page (``resume``) or from the start."""
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            cut = conn.execute("UPDATE jobs SET state = ?, interruptions = interruptions + 1, worker = NULL"
                               " WHERE id = ? AND state = ?", (INTERRUPTED, job_id, RUNNING)).rowcount
            if not cut:
                return False
            _event(conn, job_id, "state", {"state": INTERRUPTED})
            count = conn.execute("SELECT interruptions FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            if requeue and self.max_interruptions and count >= self.max_interruptions:
                # A job whose reader dies each time (a page that crashes it) would take every
                # worker down in turn: it ends here, its pages read kept.
                error = n_("The job was interrupted {n} time, its limit (jobs.max_interruptions), so it is not "
                           "read again; the pages read are kept.",
                           "The job was interrupted {n} times, its limit (jobs.max_interruptions), so it is not "
                           "read again; the pages read are kept.", count)
                conn.execute("UPDATE jobs SET state = ?, finished = ?, error = ? WHERE id = ?",
                             (FAILED, time.time(), json.dumps(error.raw()), job_id))
                _event(conn, job_id, "state", {"state": FAILED, "error": error.raw()})
            elif requeue:
                if not resume:
                    conn.execute("DELETE FROM pages WHERE job = ?", (job_id,))
                    conn.execute("DELETE FROM prepared WHERE job = ?", (job_id,))
                self._requeue(conn, job_id, resume)
        self.watchers.changed(job_id)
        return True

    def notes(self, notes: dict[str, Message | None]) -> None:
        """Say why queued jobs wait (None: they no longer do), in one transaction; an event for
        each job whose note changed."""
        changed = []
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            for job_id, note in notes.items():
                raw = json.dumps(note.raw()) if note else None
                if conn.execute("UPDATE jobs SET note = ? WHERE id = ? AND state = ? AND note IS NOT ?",
                                (raw, job_id, QUEUED, raw)).rowcount:
                    _event(conn, job_id, "note", {"note": note.raw() if note else None})
                    changed.append(job_id)
        for job_id in changed:
            self.watchers.changed(job_id)

    def resume(self, job_id: str) -> bool:
        """Queue an interrupted job again from its first unread page (one kept by
        ``jobs.on_restart: keep``); False when it is not interrupted."""
        with self._conn(durable=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("SELECT 1 FROM jobs WHERE id = ? AND state = ?", (job_id, INTERRUPTED)).fetchone() is None:
                return False
            self._requeue(conn, job_id, resume=True)
        self.watchers.changed(job_id)
        return True

    @staticmethod
    def _requeue(conn: sqlite3.Connection, job_id: str, resume: bool) -> None:
        conn.execute("UPDATE jobs SET state = ? WHERE id = ?", (QUEUED, job_id))
        _event(conn, job_id, "state", {"state": QUEUED, "resumed": resume})

    # --- the client's side ---------------------------------------------------------------

    def cancel(self, job_id: str) -> Job | None:
        """Cancel an unfinished job (its pages read are kept); a final one is left as it is."""
        with self._conn(durable=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            marks = ",".join("?" * len(UNFINISHED))
            cancelled = conn.execute(f"UPDATE jobs SET state = ?, finished = ? WHERE id = ? AND state IN ({marks})",
                                     (CANCELLED, time.time(), job_id, *UNFINISHED)).rowcount
            if cancelled:
                _event(conn, job_id, "state", {"state": CANCELLED})
        if cancelled:
            self.watchers.changed(job_id)
        return self.get(job_id)

    def state(self, job_id: str) -> str | None:
        with self._conn() as conn:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row[0] if row else None

    # --- keeping it tidy -------------------------------------------------------------------

    def running(self) -> dict[str, str | None]:
        """The running jobs' ids, each with the worker reading it."""
        with self._conn() as conn:
            return dict(conn.execute("SELECT id, worker FROM jobs WHERE state = ?", (RUNNING,)))

    def give_back(self, job_id: str, on_restart: str) -> bool:
        """Interrupt a running job whose reader stopped or died, then requeue it as
        ``on_restart`` (jobs.on_restart) says: resume, requeue (from the start) or keep."""
        return self.interrupt(job_id, requeue=on_restart != "keep", resume=on_restart == "resume")

    def recover(self, on_restart: str) -> list[str]:
        """Give back what was running when the server stopped (``give_back``). The
        interrupted jobs' ids."""
        cut = list(self.running())
        for job_id in cut:
            self.give_back(job_id, on_restart)
        return cut

    def purge(self, older_than_s: float) -> int:
        """Remove final jobs that ended more than ``older_than_s`` ago; how many."""
        marks = ",".join("?" * len(FINAL))
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            return conn.execute(f"DELETE FROM jobs WHERE state IN ({marks}) AND finished < ?",
                                (*FINAL, time.time() - older_than_s)).rowcount


def _event(conn: sqlite3.Connection, job_id: str, kind: str, data: dict) -> None:
    conn.execute("INSERT INTO events (job, at, kind, data) VALUES (?,?,?,?)",
                 (job_id, time.time(), kind, json.dumps(data, ensure_ascii=False)))


def _damaged(path: Path, exc: sqlite3.DatabaseError) -> JobError:
    return JobError(_("The job store {path} cannot be used ({reason}); move it aside and start the API "
                            "again.", path=str(path), reason=str(exc)))
