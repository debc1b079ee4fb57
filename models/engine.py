"""What every engine is: something that reads pages into the shared result contract.

Subclasses implement ``read_page``; the page loop, timing and per-page error capture
live here once, so a page that fails never costs the pages around it.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, TypeVar

from PIL import Image

from models.config import ModelConfig, Task
from models.document import Page, to_rgb
from models.errors import ChatVLMError
from models.result import OCRResult, PageResult

log = logging.getLogger(__name__)
T = TypeVar("T")


class PageSource(Protocol):
    index: int

    def load(self, max_pixels: int | None = None) -> Page: ...


OnPage = Callable[[int, int, PageResult], None]
"""Called after each page with (pages done, pages in all, that page's result)."""


class Engine(ABC):
    engine_name: ClassVar[str]
    # Whether pages are shrunk to the model's max_pixels before reading (VLMs), so they
    # may be decoded that small; OCR engines read every pixel.
    shrinks_pages: ClassVar[bool] = False

    def __init__(self, key: str, model: ModelConfig):
        self.key = key
        self.model = model

    def task(self, name: str | None) -> tuple[str, Task]:
        name = name or self.model.default_task
        if name not in self.model.tasks:
            raise ChatVLMError(f"{self.model.name} has no task '{name}'; "
                               f"its tasks are: {', '.join(self.model.tasks)}.")
        return name, self.model.tasks[name]

    @abstractmethod
    def read_page(self, page: Page, task: Task) -> PageResult:
        """Read one decoded page; raise ChatVLMError with a sentence for the user."""

    def process_image(self, image: Image.Image, task: str | None = None) -> PageResult:
        """Read a single image (the seed's one-page API)."""
        _, spec = self.task(task)
        return self._read_one(Page(0, to_rgb(image)), spec)

    def ocr(self, pages: Sequence[PageSource], task: str | None = None,
            on_page: OnPage | None = None) -> OCRResult:
        name, spec = self.task(task)
        started = time.perf_counter()
        results: list[PageResult] = []
        for source in pages:
            results.append(self._read_one(source, spec))
            if on_page:
                on_page(len(results), len(pages), results[-1])
        return OCRResult(model=self.key, engine=self.engine_name, task=name,
                         seconds=round(time.perf_counter() - started, 3), pages=results)

    def _read_one(self, source: PageSource, task: Task) -> PageResult:
        def read() -> PageResult:
            page = source.load(self.model.max_pixels if self.shrinks_pages else None)
            result = self.read_page(page, task)
            result.warnings = page.warnings + result.warnings
            return result
        return self.guarded(source.index, read)

    @staticmethod
    def guarded(index: int, step: Callable[[], T]) -> T | PageResult:
        """Run one step of page ``index``; its failure becomes that page's error result.
        Page results are timed."""
        started = time.perf_counter()
        try:
            result = step()
        except ChatVLMError as exc:
            result = PageResult(index=index, error=str(exc))
        except Exception as exc:  # an engine bug must not lose the other pages
            log.exception("page %d failed", index + 1)
            result = PageResult(index=index, error=f"Page {index + 1} failed unexpectedly: {exc}")
        if isinstance(result, PageResult):
            result.seconds = round(time.perf_counter() - started, 3)
        return result
