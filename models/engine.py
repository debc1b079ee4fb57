"""What every engine is: something that reads pages into the shared result contract.

Subclasses implement ``read_page``. The one page loop every engine shares lives here
(``Engine.ocr``): pages are read ``concurrency`` at a time — or ``batch_size`` pages in one
call of ``read_batch`` — results come back in page order with progress per page, a page that
fails keeps its error without costing the pages around it (a batch that fails is read again
page by page), and a cancel returns at once — pages in flight are abandoned (``abort`` stops
their work), pages read are kept, the rest are marked as not read. Engines that can stream
call ``on_text`` with a page's answer as it is generated.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import ClassVar, Protocol, TypeVar

from PIL import Image

from models.config import FIELDS, FieldsTask, ModelConfig, Task
from models.document import Page, to_rgb
from models.errors import ChatVLMError, ConfigError
from models.i18n import Message, _
from models.result import OCRResult, PageResult

log = logging.getLogger(__name__)
T = TypeVar("T")
CANCEL_POLL_S = 0.05


class PageSource(Protocol):
    index: int

    def load(self, max_pixels: int | None = None) -> Page: ...


OnPage = Callable[[int, int, PageResult], None]
"""Called after each page with (pages done, pages in all, that page's result)."""

Prepare = Callable[[Page], Page]
"""Turns a loaded page into the page that is read (upright, straightened, …)."""

OnText = Callable[[int, str], None]
"""Called while a page's answer is generated with (page index, the answer so far)."""


def not_read(index: int) -> PageResult:
    return PageResult(index=index, error=_("Page {page} was not read: cancelled.", page=index + 1))


class Engine(ABC):
    engine_name: ClassVar[str]
    # Whether pages are shrunk to the model's max_pixels before reading (VLMs), so they
    # may be decoded that small; OCR engines read every pixel.
    shrinks_pages: ClassVar[bool] = False

    # How many pages are read at once; where the CPU work of a page (decode, shrink, encode)
    # must be done before any is sent (a model server on the same CPU), ``encode_ahead``.
    concurrency: int = 1
    encode_ahead: ClassVar[bool] = False
    # Pages given to one ``read_batch`` call (a model that decodes several pages at once).
    batch_size: int = 1

    def __init__(self, key: str, model: ModelConfig):
        self.key = key
        self.model = model
        self.on_text: OnText | None = None  # set for one ``ocr`` call; engines that stream use it
        self.fields: FieldsTask | None = None  # the fields task's template, set by the runner

    def task(self, name: str | None) -> tuple[str, Task]:
        """The model's task called ``name``; ``fields``, the fields task the runner set."""
        if name == FIELDS:
            if self.fields is None:
                raise ConfigError(_("The fields task needs a template: choose one."))
            return FIELDS, self.fields
        return self.model.task(name)

    def fields_not_found(self, task: FieldsTask) -> dict[str, Message]:
        """Why this engine finds no value for some of the template's fields, by field name
        (Tesseract's rules cannot read a subject); a VLM reads them all."""
        return {}

    @abstractmethod
    def read_page(self, page: Page, task: Task) -> PageResult:
        """Read one decoded page; raise ChatVLMError with a sentence for the user."""

    def process_image(self, image: Image.Image, task: str | None = None) -> PageResult:
        """Read a single image (the seed's one-page API)."""
        _, spec = self.task(task)
        return self._read_one(Page(0, to_rgb(image)), spec)

    def encode(self, page: Page, task: Task) -> object:
        """A page's CPU work done ahead (``encode_ahead``); by default, the page itself."""
        return page

    def read_encoded(self, item, task: Task, source: PageSource) -> PageResult:
        """Read what ``encode`` made of a page; ``source`` gives the page again if needed."""
        return self._read_loaded(item, task)

    def abort(self) -> None:
        """Stop the work of pages in flight (a cancel); by default they finish unseen."""

    def read_batch(self, pages: list[Page], task: Task) -> list[PageResult]:
        """Read several decoded pages in one go, results in their order. Raising reads them
        again one by one, so a page that breaks a batch costs only itself."""
        return [self.read_page(page, task) for page in pages]

    def _read_chunk(self, sources: Sequence[PageSource], load: Callable[[PageSource], Page],
                    task: Task, cancel: threading.Event) -> list[PageResult]:
        """One chunk of the queue, in batches of the size the engine has now: an engine may
        lower it (out of memory) after the chunks were cut."""
        results: list[PageResult] = []
        first = 0
        while first < len(sources) and not cancel.is_set():
            batch = sources[first:first + max(1, self.batch_size)]
            first += len(batch)
            results += self._read_batch_of(batch, load, task, cancel)
        return results

    def _read_batch_of(self, sources: Sequence[PageSource], load: Callable[[PageSource], Page],
                       task: Task, cancel: threading.Event) -> list[PageResult]:
        loaded = [self.guarded(source.index, lambda s=source: load(s)) for source in sources]
        pages = [page for page in loaded if isinstance(page, Page)]
        failed = [page for page in loaded if isinstance(page, PageResult)]
        if not pages:
            return failed
        started = time.perf_counter()
        try:
            read = self.read_batch(pages, task)
        except Exception as exc:
            if cancel.is_set():
                return failed
            log.warning("a batch of %d pages failed (%s); reading them one by one", len(pages), exc)
            return failed + [self.guarded(page.index, lambda p=page: self._read_loaded(p, task))
                             for page in pages if not cancel.is_set()]
        seconds = round((time.perf_counter() - started) / len(pages), 3)  # the batch's time, shared
        for page, result in zip(pages, read):
            result.seconds = seconds
            result.warnings = page.warnings + result.warnings
        return failed + read

    def ocr(self, pages: Sequence[PageSource], task: str | None = None, on_page: OnPage | None = None,
            cancel: threading.Event | None = None, prepare: Prepare | None = None,
            on_text: OnText | None = None) -> OCRResult:
        name, spec = self.task(task)
        cancel = cancel or threading.Event()
        self.on_text = on_text
        started = time.perf_counter()
        results: dict[int, PageResult] = {}

        def load(source: PageSource) -> Page:
            page = source.load(self.model.max_pixels if self.shrinks_pages else None)
            return prepare(page) if prepare else page

        def finished(result: PageResult) -> None:
            results[result.index] = result
            if on_page:
                on_page(len(results), len(pages), result)

        # Each step reads one page, or one batch of pages, and returns their results.
        queue: list[Callable[[], list[PageResult]]] = []
        if self.batch_size > 1 and len(pages) > 1:
            for first in range(0, len(pages), self.batch_size):
                chunk = pages[first:first + self.batch_size]
                queue.append(lambda c=chunk: self._read_chunk(c, load, spec, cancel))
        else:
            for source in pages:
                if cancel.is_set():
                    break
                if not self.encode_ahead:
                    queue.append(lambda s=source: [self.guarded(s.index, lambda: self.read_encoded(load(s), spec, s))])
                    continue
                item = self.guarded(source.index, lambda s=source: self.encode(load(s), spec))
                if isinstance(item, PageResult):
                    finished(item)
                else:
                    queue.append(lambda s=source, i=item: [
                        self.guarded(s.index, lambda: self.read_encoded(i, spec, s))])

        pool = ThreadPoolExecutor(max(1, self.concurrency), thread_name_prefix=f"{self.engine_name}-page")
        in_flight: set[Future] = set()
        try:
            while (queue or in_flight) and not cancel.is_set():
                while queue and len(in_flight) < max(1, self.concurrency):
                    in_flight.add(pool.submit(queue.pop(0)))
                done, _ = wait(in_flight, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    in_flight.discard(future)
                    for result in future.result():
                        finished(result)
        finally:
            if in_flight or queue:  # cancelled, or the caller was interrupted
                cancel.set()
                self.abort()
            pool.shutdown(wait=False, cancel_futures=True)
        ordered = [results.get(source.index) or not_read(source.index) for source in pages]
        return OCRResult(model=self.key, engine=self.engine_name, task=name,
                         seconds=round(time.perf_counter() - started, 3), pages=ordered)

    def _read_loaded(self, page: Page, task: Task) -> PageResult:
        result = self.read_page(page, task)
        result.warnings = page.warnings + result.warnings
        return result

    def _read_one(self, source: PageSource, task: Task) -> PageResult:
        return self.guarded(source.index, lambda: self._read_loaded(
            source.load(self.model.max_pixels if self.shrinks_pages else None), task))

    @staticmethod
    def guarded(index: int, step: Callable[[], T]) -> T | PageResult:
        """Run one step of page ``index``; its failure becomes that page's error result.
        Page results are timed."""
        started = time.perf_counter()
        try:
            result = step()
        except ChatVLMError as exc:
            result = PageResult(index=index, error=exc.message)
        except Exception as exc:  # an engine bug must not lose the other pages
            log.exception("page %d failed", index + 1)
            result = PageResult(index=index, error=_("Page {page} failed unexpectedly: {reason}",
                                                     page=index + 1, reason=exc))
        if isinstance(result, PageResult):
            result.seconds = round(time.perf_counter() - started, 3)
        return result
