"""Several documents read one after another for one session (the app's uploader), each
finished run kept in the history."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from managers.history import keep
from managers.runs import Choice, Run, read_document
from models.engine import PageSource
from models.errors import ChatVLMError
from models.i18n import Message, _

if TYPE_CHECKING:
    from managers.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One document of a batch: its pages, or why it cannot be read (e.g. too many pages)."""

    key: str  # the caller's name for it (an upload's file id)
    name: str
    pages: list[PageSource] = field(default_factory=list)
    refused: Message | None = None
    data: bytes = b""  # the document's bytes, kept with its run in the history


class Batch:
    """Documents read one after another with one choice, in a thread of their own, so a
    click elsewhere in the app (a rerun) never stops them; ``cancel`` answers at once and
    keeps what was read. Progress: ``current`` item, ``done`` and ``total`` pages of it, and
    ``streaming``: (page index, its answer so far) for the page being read, where the engine
    streams."""

    def __init__(self, runtime: Runtime, choice: Choice, items: list[Item]):
        self.choice, self.items = choice, items
        self.cancel = threading.Event()
        self.current, self.done, self.total, self.status = 0, 0, 0, Message("")
        self.streaming: tuple[int, str] | None = None
        self.runs: dict[str, Run] = {}
        self.errors: dict[str, Message] = {}
        self.history_warning: Message | None = None
        self._thread = threading.Thread(target=self._read, args=(runtime,), name="batch", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _streamed(self, index: int, text: str) -> None:
        # Pages read side by side would take turns in one view: follow one until it is done.
        if self.streaming is None or self.streaming[0] == index:
            self.streaming = (index, text)

    def _page_done(self, done: int, index: int) -> None:
        self.done = done
        if self.streaming is not None and self.streaming[0] == index:
            self.streaming = None

    def _read(self, runtime: Runtime) -> None:
        for n, item in enumerate(self.items):
            if self.cancel.is_set():
                break
            self.current, self.done, self.total, self.streaming = n, 0, len(item.pages), None
            if item.refused:
                self.errors[item.key] = item.refused
                continue
            try:
                self.runs[item.key] = read_document(
                    runtime, self.choice, item.pages, on_page=lambda done, total, page: self._page_done(done, page.index),
                    on_event=lambda event: setattr(self, "status", event.message), cancel=self.cancel,
                    on_text=self._streamed)
                self.history_warning = keep(runtime.history, self.runs[item.key], item.name, item.data) or self.history_warning
            except ChatVLMError as exc:
                self.errors[item.key] = exc.message
            except Exception as exc:  # a bug must still end the batch with a sentence, not silently
                log.exception("reading %s failed", item.name)
                self.errors[item.key] = _("Reading {name} failed unexpectedly: {reason}", name=item.name, reason=exc)
