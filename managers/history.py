"""The run history: every finished run, kept in SQLite under the data dir so it survives a
reload and a restart, and can be listed, reopened, exported again and deleted.

- One connection per thread, kept while the thread lives: the app's sessions, its batch
  threads and ``cli.py`` processes all write here, and only SQLite ever opens the files (see
  "one connection per thread" below). WAL lets readers go on while one writes; every write
  is ``BEGIN IMMEDIATE`` under a busy timeout, so writers queue instead of failing (a
  deferred transaction that reads first could not wait for the lock).
- The schema is ``MIGRATIONS``, applied in order up to ``PRAGMA user_version``.
- A document's bytes are kept once per content (its SHA-256): reading one file with several
  models is the usual way to compare them. Over ``history.max_document_mb`` only its result
  and page images are kept. Past ``history.max_total_mb`` the oldest runs go first.
- A damaged file (garbage, truncated) is found by SQLite's own errors and left as it is, never
  renamed or deleted: ``add`` keeps nothing and ``warning`` holds the one sentence to show
  (for the thread that called it, until its next ``add``); listing or reopening says the
  same sentence as an error.
- A person's corrections of a fields run are applied to its kept result (``correct_fields``),
  the value read kept beside each (models/fields/result.py): to the fields as stored, not as a
  session read them, so sessions correcting one run never undo each other's corrections.
- Results are stored with their messages as id and params (``RAW``), so a run reopened later
  reads in the language chosen then; rows kept as plain English text still load.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from PIL import Image

from managers.locks import FileLock
from managers.runs import Choice, Run, check_mode
from models.config import AppConfig, Limits, data_dir
from models.document import Document, open_document, png_bytes, png_image
from models.errors import ChatVLMError, HistoryDamaged, HistoryError
from models.i18n import Message, _
from models.fields.collect import correct
from models.fields.result import FieldResult, Value
from models.fields.template import kept as kept_template
from models.result import OCRResult

FILE_NAME = "history.sqlite3"
BUSY_S = 60  # how long a writer waits for another one before giving up
MB = 2**20
T = TypeVar("T")
RAW = {"messages": "raw"}  # the serialisation context that keeps messages translatable

# Each step takes the database from version n to n + 1 (its index + 1). Never edit a step
# that has shipped: add one.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        # size: what the run itself takes (result and page images), for the total cap;
        # document_size: the file's size, kept even when its bytes are not.
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created REAL NOT NULL,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            pages INTEGER NOT NULL,
            model TEXT NOT NULL,
            mode TEXT NOT NULL,
            task TEXT NOT NULL,
            hide_header_footer INTEGER NOT NULL,
            box TEXT,
            seconds REAL NOT NULL,
            document_size INTEGER NOT NULL,
            size INTEGER NOT NULL,
            result TEXT NOT NULL)""",
        "CREATE INDEX runs_sha256 ON runs (sha256)",
        """CREATE TABLE images (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            page INTEGER NOT NULL,
            png BLOB NOT NULL,
            PRIMARY KEY (run_id, page))""",
        """CREATE TABLE documents (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            data BLOB NOT NULL)""",
    ),
]

_ENTRY = """SELECT r.id, r.created, r.name, r.sha256, r.pages, r.model, r.mode, r.task, r.seconds,
    r.document_size, EXISTS (SELECT 1 FROM documents d WHERE d.sha256 = r.sha256) FROM runs r"""


@dataclass(frozen=True)
class Entry:
    id: int
    created: datetime
    name: str
    sha256: str
    pages: int
    model: str
    mode: str
    task: str
    seconds: float
    size: int  # the document's bytes
    has_document: bool  # False: it was over history.max_document_mb when it was read

    @classmethod
    def of(cls, row: tuple) -> Entry:
        id, created, *middle, has_document = row
        return cls(id, datetime.fromtimestamp(created).astimezone(), *middle, bool(has_document))


@dataclass(frozen=True)
class Stored:
    """A run as it was read: reopen it with ``run``; ``document`` is None when not kept."""

    entry: Entry
    choice: Choice
    result: OCRResult
    images: dict[int, Image.Image]
    document: bytes | None

    @property
    def run(self) -> Run:
        return Run(self.choice, self.result, self.images, self.entry.id)

    def page_image(self, limits: Limits) -> Callable[[int], Image.Image]:
        """Page index → the page the result's boxes belong to, as exports want it; the
        document is opened on the first page asked for (a text export asks for none)."""
        @functools.cache
        def document() -> Document:
            if self.document is None:
                raise HistoryError(_("'{name}' was over history.max_document_mb, so its pages were not kept; "
                                     "read the file again to draw them.", name=self.entry.name))
            return open_document(self.document, self.entry.name, limits)

        def page(index: int) -> Image.Image:
            return self.images[index] if index in self.images else document().page(index).image

        return page


class History:
    def __init__(self, config: AppConfig):
        self.config, self.settings = config, config.history
        self.path = data_dir() / FILE_NAME
        # One History may serve a whole process (its runtime's): each thread has its own
        # connection and its own warning.
        self._thread = _PerThread(self.path)

    @property
    def warning(self) -> Message | None:
        """The sentence to show when this thread's last ``add`` could not keep its run (the
        database is damaged); None once a run is kept again, e.g. after the file was moved."""
        return self._thread.warning

    # --- the operations ---------------------------------------------------------------------

    def add(self, run: Run, document_name: str, data: bytes) -> int | None:
        """Keep a finished run; its id, or None when ``history.enabled`` is off or
        ``warning`` says why it was not kept."""
        self._thread.warning = None
        if not self.settings.enabled:
            return None
        result = run.result.model_dump_json(context=RAW)
        pngs = {index: png_bytes(image) for index, image in run.images.items()}
        sha256 = hashlib.sha256(data).hexdigest()
        keep = len(data) <= self.settings.max_document_mb * MB
        choice = run.choice
        row = (time.time(), document_name, sha256, len(run.result.pages), choice.key,
               check_mode(self.config, choice.key, choice.mode), run.result.task,
               choice.hide_header_footer, json.dumps(choice.box) if choice.box else None,
               run.result.seconds, len(data), len(result.encode()) + sum(map(len, pngs.values())), result)

        def work(conn: sqlite3.Connection) -> int:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                run_id = conn.execute(
                    "INSERT INTO runs (created, name, sha256, pages, model, mode, task, hide_header_footer,"
                    " box, seconds, document_size, size, result) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    row).lastrowid
                conn.executemany("INSERT INTO images (run_id, page, png) VALUES (?, ?, ?)",
                                 [(run_id, index, png) for index, png in pngs.items()])
                if keep:
                    conn.execute("INSERT OR IGNORE INTO documents (sha256, size, data) VALUES (?, ?, ?)",
                                 (sha256, len(data), data))
                self._evict(conn, run_id)
            _shrink(conn)
            return run_id

        try:
            return self._use(work)
        except HistoryDamaged as exc:  # the reading it comes from goes on; the warning says why
            self._thread.warning = exc.message
            return None

    def list(self, search: str | None = None, limit: int = 200) -> list[Entry]:
        """Runs newest first; ``search``: a part of the file name, in any case."""
        def work(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(f"{_ENTRY} WHERE ? IS NULL OR instr(casefold(r.name), ?) > 0 "
                                "ORDER BY r.id DESC LIMIT ?", (search, (search or "").casefold(), limit))
            return [Entry.of(row) for row in rows]

        return self._use(work)

    def get(self, run_id: int) -> Stored:
        def work(conn: sqlite3.Connection) -> Stored:
            with conn:  # one read transaction: a delete in between cannot split the run
                conn.execute("BEGIN")
                row = conn.execute(f"{_ENTRY} WHERE r.id = ?", (run_id,)).fetchone()
                if row is None:
                    raise _no_run(run_id)
                hide, box, result = conn.execute(
                    "SELECT hide_header_footer, box, result FROM runs WHERE id = ?", (run_id,)).fetchone()
                images = conn.execute("SELECT page, png FROM images WHERE run_id = ?", (run_id,)).fetchall()
                document = conn.execute("SELECT data FROM documents WHERE sha256 = ?", (row[3],)).fetchone()
            entry = Entry.of(row)
            try:
                read = OCRResult.model_validate_json(result)
                choice = Choice(entry.model, entry.mode, entry.task, bool(hide),
                                tuple(json.loads(box)) if box else None, read.template)
                return Stored(entry, choice, read, {page: png_image(png) for page, png in images},
                              document[0] if document else None)
            # A row SQLite reads back but we cannot: pydantic's and json's errors are
            # ValueErrors, a PNG that Pillow cannot open an OSError.
            except (ValueError, OSError):
                raise _damaged_run(entry.name) from None

        return self._use(work)

    def correct_fields(self, run_id: int, changes: Mapping[str, Value | None]) -> list[FieldResult]:
        """Apply a person's corrections (a field's name → its new value; None empties it) to the
        fields kept with a fields run, checked as models.fields.collect.correct checks them with
        the run's template, and return the run's fields as they now are. The corrections are
        applied to what is stored, in the write transaction that reads it: another session's
        corrections of other fields stay, and an account is checked against the BIK as it is
        kept now, never against the one a session read before."""
        def work(conn: sqlite3.Connection) -> list[FieldResult]:
            with conn:
                # Read and written in one write transaction: a correction elsewhere waits.
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT name, result FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise _no_run(run_id)
                name, kept = row
                try:
                    result = OCRResult.model_validate_json(kept)
                except ValueError:
                    raise _damaged_run(name) from None
                template = kept_template(self.config.templates, result.template, [f.name for f in result.fields])
                if template is None:
                    raise HistoryError(_("The template '{template}' is no longer in config.yaml as it was, so "
                                         "the values of '{name}' cannot be corrected.",
                                         template=result.template or "-", name=name))
                for field_name, value in changes.items():
                    result.fields = correct(template, result.fields, field_name, value)
                text = result.model_dump_json(context=RAW)
                conn.execute("UPDATE runs SET result = ?, size = size + ? WHERE id = ?",
                             (text, len(text.encode()) - len(kept.encode()), run_id))
                return result.fields

        return self._use(work)

    def delete(self, run_id: int) -> bool:
        """Remove a run (and its document, if no other run has it); False if it was not there."""
        def work(conn: sqlite3.Connection) -> bool:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                found = _remove(conn, run_id)
            _shrink(conn)
            return found

        return self._use(work)

    # --- keeping under the total cap --------------------------------------------------------

    def _evict(self, conn: sqlite3.Connection, keep: int) -> None:
        """Remove the oldest runs until the total fits the cap; never the run just added."""
        cap = self.settings.max_total_mb * MB
        while conn.execute("SELECT (SELECT coalesce(sum(size), 0) FROM runs)"
                           " + (SELECT coalesce(sum(size), 0) FROM documents)").fetchone()[0] > cap:
            oldest = conn.execute("SELECT min(id) FROM runs WHERE id != ?", (keep,)).fetchone()[0]
            if oldest is None:
                return
            _remove(conn, oldest)

    # --- connections, the schema and damage -------------------------------------------------

    def _use(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on this thread's connection; SQLite's errors as the history's."""
        try:
            return work(self._thread.connection())
        except sqlite3.DatabaseError as exc:
            # A connection that failed is not trusted again: the next operation opens another.
            self._thread.forget()
            if _damage(exc):
                raise HistoryDamaged(_("The history database {path} is damaged ({reason}), so no run is kept "
                                       "in it; move the file away (nothing was deleted) and a new history starts.",
                                       path=self.path, reason=exc)) from None
            raise HistoryError(_("The history database {path} cannot be used ({reason}).",
                                 path=self.path, reason=exc)) from None


# --- one connection per thread ------------------------------------------------------------
#
# Only SQLite opens the database files. Closing any descriptor of a file drops all of the
# process's POSIX locks on it, those SQLite holds for its other connections included ("How
# To Corrupt An SQLite Database File", 2.2), and another process may then checkpoint under
# a live writer. Renaming the files is no better: whoever has them open goes on writing into
# the renamed ones. So a damaged file stays where it is, and is only reported.


@dataclass(eq=False)
class _Held:
    """A thread's connection, closed when the thread ends or its History goes."""

    file: tuple[int, int] | None  # (device, inode): the file it was opened on
    conn: sqlite3.Connection
    pid: int = field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        self.close = weakref.finalize(self, _close, self.conn, self.pid)


_inherited: list[sqlite3.Connection] = []


def _close(conn: sqlite3.Connection, pid: int) -> None:
    if os.getpid() == pid:
        conn.close()
    else:
        # A child of fork must neither use nor close its parent's connections (closing
        # checkpoints or drops locks on the parent's behalf): kept, unused, until it exits.
        # SQLite's own record of the parent's locks is inherited too, so a forked child
        # should exec (as subprocess does) or use "spawn" before it keeps runs.
        _inherited.append(conn)


class _PerThread(threading.local):
    """What one History holds for each thread: its connection, and the sentence about its
    last ``add``."""

    held: _Held | None = None
    warning: Message | None = None

    def __init__(self, path: Path):
        self.path = path

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use; a new one when the thread was
        forked into another process, or the file at the path was moved, deleted or replaced
        (a connection writes on into the file it opened; ``stat`` only reads the directory)."""
        if self.held is not None and (self.held.pid, self.held.file) == (os.getpid(), _file(self.path)):
            return self.held.conn
        self.forget()
        conn = _connect(self.path)
        self.held = _Held(_file(self.path), conn)
        return conn

    def forget(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            held.close()


def _file(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:  # not there (or not visible): SQLite says more when it opens it
        return None
    return stat.st_dev, stat.st_ino


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are the explicit BEGINs above, nothing implicit.
    # check_same_thread=False only so that the thread's end or the exit may close it.
    conn = sqlite3.connect(path, timeout=BUSY_S, isolation_level=None, check_same_thread=False)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            # Two connections switching a new file to WAL at once may get SQLITE_BUSY without
            # the busy timeout being tried, so the first ones take turns on a file beside it.
            with FileLock(path.with_name(path.name + ".lock")):
                # Set before the first table exists, so deleted runs give their space back.
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # SQLite's lower() and LIKE fold ASCII only; file names are often Cyrillic.
        conn.create_function("casefold", 1, str.casefold, deterministic=True)
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
        return
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another writer may have been first
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in step:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")


def _no_run(run_id: int) -> HistoryError:
    return HistoryError(_("There is no run {id} in the history; it was deleted, or removed to "
                          "stay under history.max_total_mb.", id=str(run_id)))


def _damaged_run(name: str) -> HistoryError:
    return HistoryError(_("The run of '{name}' kept in the history is damaged and cannot be "
                          "reopened; delete it.", name=name))


def _remove(conn: sqlite3.Connection, run_id: int) -> bool:
    row = conn.execute("DELETE FROM runs WHERE id = ? RETURNING sha256", (run_id,)).fetchone()
    if row is not None:
        conn.execute("DELETE FROM documents WHERE sha256 = ?1 AND NOT EXISTS "
                     "(SELECT 1 FROM runs WHERE sha256 = ?1)", row)
    return row is not None


def _shrink(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA incremental_vacuum").fetchall()  # runs as its rows are fetched


def _damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not a database or is malformed (not locked, not full)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def keep(history: History, run: Run, document_name: str, data: bytes) -> Message | None:
    """Keep a finished run where a history that fails must never fail the reading (its row
    in ``run.history_id``): the sentence to show instead when the run was not kept."""
    try:
        run.history_id = history.add(run, document_name, data)
    except ChatVLMError as exc:
        return exc.message
    return history.warning
