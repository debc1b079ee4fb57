"""Who waits for a job to change in this process: a request waiting for its job (/v1/ocr) or
following it (events) is told when the store commits a change to it, instead of finding out
at its next look at the database (a 50 ms poll added ~25 ms to every small page).

A change made by another process (none with the embedded worker, which shares the API's
process) is not seen here: waiters still look now and then.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class Watchers:
    def __init__(self):
        self._lock = threading.Lock()
        self._calls: dict[str, list[Callable[[], None]]] = {}

    @contextlib.contextmanager
    def watch(self, job_id: str, call: Callable[[], None]) -> Iterator[None]:
        """``call()`` after every change to the job while inside; it runs on the writer's
        thread, so it only hands the news on."""
        with self._lock:
            self._calls.setdefault(job_id, []).append(call)
        try:
            yield
        finally:
            with self._lock:
                calls = self._calls[job_id]
                calls.remove(call)
                if not calls:
                    del self._calls[job_id]

    def changed(self, job_id: str) -> None:
        with self._lock:
            calls = list(self._calls.get(job_id, ()))
        for call in calls:
            call()
