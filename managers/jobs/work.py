"""Reading one job: what the API's own worker and ``cli.py worker`` both do with a job.

A job's documents are opened again from their bytes and read with the document runner
(managers/runs.py) — the same arbiter, leases and page loop as the app and the CLI, so one
model holds the GPU whoever asks. Every page is handed to the job's ``Sink`` as soon as it is
read, which keeps it (SQLite here, Redis for a remote worker); pages a sink already holds are
not read again, so a job cut by a crash resumes at its first unread page. The sink also says
when the job was cancelled: reading stops at once and the pages read stay.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from managers import runs
from models.document import open_document, png_bytes
from models.errors import Cancelled, ChatVLMError
from models.i18n import Message, _
from models.jobs import DONE, FAILED
from models.result import OCRResult, PageResult

if TYPE_CHECKING:
    from PIL import Image

    from managers.jobs.store import Document, Spec
    from managers.runtime import Runtime

CANCEL_POLL_S = 0.5
log = logging.getLogger(__name__)


class Sink(ABC):
    """Where a job's documents come from and its pages go."""

    @abstractmethod
    def document(self, n: int) -> bytes:
        """The bytes of document ``n``."""

    @abstractmethod
    def kept(self, n: int) -> dict[int, PageResult]:
        """Pages of document ``n`` read before, by index."""

    @abstractmethod
    def page_read(self, n: int, page: PageResult, prepared: bytes | None) -> bool:
        """Keep a page, with the page as preparation turned or straightened it (PNG) where it
        did, which its boxes belong to; False when the job no longer wants pages (it was
        cancelled)."""

    @abstractmethod
    def document_read(self, n: int, result: OCRResult) -> None:
        """Keep what a document's whole result adds to its pages: engine, time, fields."""

    @abstractmethod
    def cancelled(self) -> bool:
        """Whether the job was cancelled."""


def choice(spec: Spec) -> runs.Choice:
    return runs.Choice(spec.model, spec.mode, spec.task, spec.hide_header_footer, spec.box, spec.template)


def read_job(runtime: Runtime, spec: Spec, documents: list[Document], sink: Sink) -> None:
    """Read every unread page of the job's documents into the sink. Raises Cancelled when
    the job was cancelled, ChatVLMError when the model cannot be made ready or a document
    cannot be opened (the pages read so far are kept by then)."""
    cancel = threading.Event()
    stop_watching = threading.Event()

    def watch() -> None:  # a cancel must stop a page in flight, not only the next one
        while not stop_watching.wait(CANCEL_POLL_S):
            if sink.cancelled():
                cancel.set()
                return

    watcher = threading.Thread(target=watch, name="job-cancel", daemon=True)
    watcher.start()
    try:
        for document in documents:
            _read(runtime, spec, document, sink, cancel)
    finally:
        stop_watching.set()


def run_job(runtime: Runtime, spec: Spec, documents: list[Document], sink: Sink) -> tuple[str, Message | None] | None:
    """Read the job to its end: (DONE, None), (FAILED, the sentence why), or None when it was
    cancelled (or its reader was told to stop: the pages read so far are kept either way)."""
    try:
        read_job(runtime, spec, documents, sink)
    except Cancelled as exc:
        if sink.cancelled():  # the job's own cancel, or its reader told to stop: its pages are kept
            return None
        return FAILED, exc.message  # e.g. a model change it waited on, cancelled by another user
    except ChatVLMError as exc:
        return FAILED, exc.message
    except Exception as exc:  # a bug must still end the job with a sentence
        log.exception("a job failed")
        return FAILED, _("The job failed unexpectedly: {reason}", reason=exc)
    return DONE, None


def _read(runtime: Runtime, spec: Spec, document: Document, sink: Sink, cancel: threading.Event) -> None:
    kept = sink.kept(document.n)
    todo = [index for index in document.pages if index not in kept]
    if cancel.is_set():
        raise Cancelled(_("The job was cancelled."))
    opened = open_document(sink.document(document.n), document.name, runtime.config.limits)

    prepared: dict[int, Image.Image] = {}  # filled before each page is read

    def on_page(done: int, total: int, page: PageResult) -> None:
        image = prepared.get(page.index)
        if not sink.page_read(document.n, page, png_bytes(image) if image else None):
            cancel.set()

    # With nothing left (the crash came after its last page) it is still run, for its fields.
    run = runs.read_document(runtime, choice(spec), opened.pages(todo), on_page=on_page, cancel=cancel,
                             kept=list(kept.values()), images=prepared)
    if cancel.is_set():
        raise Cancelled(_("The job was cancelled."))
    sink.document_read(document.n, run.result)
