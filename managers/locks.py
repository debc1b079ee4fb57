"""Kernel locks on files: the only liveness the arbiter trusts.

A lock taken with ``flock`` belongs to an open file description and dies with it, so a
process killed by SIGKILL — or one whose pid a restarted app now owns — holds nothing the
moment it is gone. A pid in a file proves nothing; a lock that cannot be taken proves
that someone alive holds it.

- ``FileLock``: one lock file, one open file per holder (each thread opens its own, so two
  threads of one process exclude each other as two processes do).
- ``Slots``: records that count only while their lock is held (leases, switch requests).
  Slot files are reused and never deleted: deleting a file another process may have open
  would let two holders lock two different files of the same name.

Files are created 0660 so several users of one machine can share a setgid folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

RECORD_BYTES = 1024  # a slot's record is written with one pwrite of this size
FILE_MODE = 0o660


def _open(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    with contextlib.suppress(OSError):  # not ours to change: the owner set it up
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, FILE_MODE)
    return fd


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` whole: a reader in any process sees the old text or the new one, never
    half of either. The temporary name is this thread's own, so two writers never share it."""
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)  # shared with the group
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


class FileLock:
    """An exclusive flock on ``path``, held by this object's own open file."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        assert self._fd is None, "a FileLock is taken once; open another for another holder"
        fd = _open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the lock

    def write(self, data: bytes) -> None:
        """Replace the file's content (one pwrite, so readers see old or new, not a mix)."""
        assert self._fd is not None
        os.pwrite(self._fd, data.ljust(RECORD_BYTES), 0)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def held_by_someone(path: Path) -> bool:
    """Whether any open file (another process, or another file of this one) locks ``path``."""
    if not path.exists():
        return False
    probe = FileLock(path)
    if probe.acquire(blocking=False):
        probe.release()
        return False
    return True


def read_record(path: Path) -> dict | None:
    """A slot's record; None when it is empty or caught mid-write (callers treat it as unknown)."""
    for _ in range(3):
        try:
            text = path.read_bytes().strip()
        except OSError:
            return None
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            time.sleep(0.005)
    return None


class Slot:
    """A held slot: its record counts while this object is open."""

    def __init__(self, lock: FileLock, record: dict):
        self._lock = lock
        self.record = record
        self.update()

    def update(self, **changes) -> None:
        self.record.update(changes)
        self._lock.write(json.dumps(self.record).encode())

    def release(self) -> None:
        self._lock.release()


class Slots:
    """A folder of reusable slot files, each a record under its own lock."""

    _local = threading.Lock()  # only narrows the race between threads picking a slot

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)

    def _paths(self) -> list[Path]:
        return sorted(self.dir.glob("slot-*.lock"), key=lambda p: int(p.stem.split("-")[1]))

    def take(self, record: dict) -> Slot:
        with self._local:
            n = 0
            while True:
                lock = FileLock(self.dir / f"slot-{n}.lock")
                if lock.acquire(blocking=False):
                    return Slot(lock, record)
                n += 1

    def live(self) -> Iterator[dict]:
        """The records of slots someone holds now; an unreadable held record is ``{}``."""
        for path in self._paths():
            if held_by_someone(path):
                yield read_record(path) or {}
