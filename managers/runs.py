"""The document runner: what the app's Run button and ``cli.py ocr`` both do.

For one document and one choice of (model, mode, task): make the model ready through the
runtime's operations (a switch or a load, joined if it is already under way), take a lease
on (mode, model) so no change cuts the pages being read, and read them through the engine's
one page loop. Seams for what later features add around a run: ``prepare`` (page
preparation, on each page as it is loaded) and the ``Run`` it returns (exports, history).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from PIL import Image

from managers.api_key import api_key
from managers.engines.openai import OpenAIEngine
from managers.engines.tesseract import TesseractEngine
from managers.container_manager import OnEvent, SwitchEvent
from managers.operations import Operation
from managers.prepare import prepare_page
from managers.readiness import api_ready
from models.answers import full_page
from models.config import FIELDS, MODE_LABELS, AppConfig, Mode, fields_task, lock_dir
from models.fields.collect import collect
from models.engine import Engine, OnPage, OnText, PageSource, Prepare
from models.errors import Cancelled, ChatVLMError, ConfigError, NotAvailable
from models.i18n import _
from models.result import OCRResult, PageResult

if TYPE_CHECKING:
    from managers.runtime import Runtime


@dataclass(frozen=True)
class Choice:
    """What to read with: a model, a mode (None: its first) and a task (None: its first)."""

    key: str
    mode: Mode | None = None
    task: str | None = None
    hide_header_footer: bool = False
    box: tuple[int, int, int, int] | None = None  # for grounding tasks, in page pixels
    template: str | None = None  # for the fields task: a key of config.yaml's templates


@dataclass
class Run:
    choice: Choice
    result: OCRResult
    # Pages as they were read where preparation changed them, so views and exports draw the
    # boxes on the page they belong to; other pages are the document's own.
    images: dict[int, Image.Image] = field(default_factory=dict)
    # Its row in the history where it was kept there, so a person's corrections are kept with it.
    history_id: int | None = None


# --- which engine reads pages for a model in a mode -----------------------------------------

def _vllm(config: AppConfig, key: str) -> Engine:
    if config.model(key).vllm.remote:
        return OpenAIEngine(config, key)
    return OpenAIEngine(config, key, api_key(lock_dir(config)))


def _local(runtime: Runtime, key: str) -> Engine:
    current = runtime.loader.current()
    if current is None or current.key != key:
        raise NotAvailable(_("{model} is not loaded — load it first (Load in the sidebar, or "
                             "cli.py ocr --mode local).", model=runtime.config.model(key).name))
    return current.view()  # this run's options and cancel are its own


ENGINES: dict[str, Callable[[Runtime, str], Engine]] = {
    "cpu": lambda runtime, key: TesseractEngine(key, runtime.config.model(key), runtime.config.limits.cpu_workers),
    "vllm": lambda runtime, key: _vllm(runtime.config, key),
    "local": _local,
}


def check_mode(config: AppConfig, key: str, mode: Mode | None) -> Mode:
    """The mode to use (default: the model's first), refused if the model has no such backend."""
    model = config.model(key)
    mode = mode or model.modes[0]
    if mode not in model.modes:
        modes = MODE_LABELS[model.modes[0]]
        for other in model.modes[1:]:  # a list of names that are translated themselves
            modes = _("{names}, {name}", names=modes, name=MODE_LABELS[other])
        raise NotAvailable(_("{model} has no {mode} backend; it runs in: {modes}.",
                             model=model.name, mode=MODE_LABELS[mode], modes=modes))
    return mode


def make_engine(runtime: Runtime, key: str, mode: Mode | None = None) -> Engine:
    return ENGINES[check_mode(runtime.config, key, mode)](runtime, key)


def managed(config: AppConfig, key: str, mode: Mode) -> bool:
    """Whether reading holds the GPU here (so it needs a ready model and a lease)."""
    return mode == "local" or (mode == "vllm" and not config.model(key).vllm.remote)


def _hold(runtime: Runtime, key: str, mode: Mode, pages: int):
    """A lease on (mode, key) for ``pages`` pages where reading holds the GPU; else nothing."""
    if managed(runtime.config, key, mode):
        return runtime.arbiter.lease(mode, key, pages)
    return contextlib.nullcontext()


def _switch_work(runtime: Runtime, key: str):
    arbiter = runtime.arbiter
    return lambda on_event, cancel: arbiter.switch(key, on_event, cancel)


def _load_work(runtime: Runtime, key: str):
    loader = runtime.loader

    def work(on_event: OnEvent, cancel: threading.Event):
        started = time.monotonic()
        return loader.load_model(
            key, on_progress=lambda m: on_event(SwitchEvent("loading", m, time.monotonic() - started)),
            cancel=cancel)

    return work


def switch(runtime: Runtime, key: str) -> Operation:
    return runtime.operations.start("switch", key, "vllm", _switch_work(runtime, key))


def load(runtime: Runtime, key: str) -> Operation:
    return runtime.operations.start("load", key, "local", _load_work(runtime, key))


def stop(runtime: Runtime) -> Operation:
    arbiter = runtime.arbiter
    return runtime.operations.start("stop", None, None, lambda on_event, cancel: arbiter.stop(on_event, cancel))


def unload(runtime: Runtime) -> Operation:
    arbiter = runtime.arbiter
    return runtime.operations.start("unload", None, "local",
                                    lambda on_event, cancel: arbiter.release_local(on_event, cancel))


def is_ready(runtime: Runtime, key: str, mode: Mode) -> bool:
    """Whether (mode, key) holds the GPU and answers, so reading needs no switch or load."""
    if mode == "local":
        current = runtime.loader.current()
        return current is not None and current.key == key
    holder = runtime.arbiter.holder()
    if holder is None or (holder.mode, holder.model) != ("vllm", key):
        return False
    config = runtime.config
    v = config.model(key).vllm
    return api_ready(v.base_url, v.served_model_name, api_key=api_key(lock_dir(config)))[0]


def make_ready(runtime: Runtime, key: str, mode: Mode, on_event: OnEvent | None = None,
               cancel: threading.Event | None = None) -> None:
    """Switch to or load the model (joining one under way) and wait until it is ready. A set
    ``cancel`` answers at once and cancels the operation only if this call started it; an
    interrupt (Ctrl-C) cancels what it started and waits for the clean-up first."""
    if not managed(runtime.config, key, mode) or is_ready(runtime, key, mode):
        return
    work = _switch_work(runtime, key) if mode == "vllm" else _load_work(runtime, key)
    op, started = runtime.operations.begin("switch" if mode == "vllm" else "load", key, mode, work)
    try:
        op.wait(on_event, cancel)
    except Cancelled:
        if started:
            op.cancel.set()
        raise
    except ChatVLMError:
        raise
    except BaseException:
        if started:
            op.cancel.set()
            op._done.wait()
        raise


def read_document(runtime: Runtime, choice: Choice, pages: list[PageSource], *,
                  on_page: OnPage | None = None, on_event: OnEvent | None = None,
                  cancel: threading.Event | None = None, prepare: Prepare | None = None,
                  on_text: OnText | None = None, kept: Sequence[PageResult] = (),
                  images: dict[int, Image.Image] | None = None) -> Run:
    """Read ``pages`` with ``choice``; a failed page keeps its error, a cancel returns at once
    with the pages read. Pages are prepared as the model's ``preprocess`` says unless
    ``prepare`` is given. ``on_text`` receives a page's answer while it is generated, where
    the engine streams. ``kept``: pages of this document read before (a job resumed after
    a crash), which join the result and its fields in page order. ``images``: where the pages
    preparation changed go, each before its page is read, for a caller that keeps a page as
    soon as it is read (the run's ``images`` either way). Raises ChatVLMError (one
    sentence) when the model cannot be made ready or is taken away before the first page."""
    config = runtime.config
    mode = check_mode(config, choice.key, choice.mode)
    # An unknown task or template is refused before anything starts.
    fields = fields_task(choice.template, config.template(choice.template)) if choice.task == FIELDS else None
    if fields is None:
        config.model(choice.key).task(choice.task)
    cancel = cancel or threading.Event()
    make_ready(runtime, choice.key, mode, on_event, cancel)
    engine = make_engine(runtime, choice.key, mode)
    engine.hide_header_footer = choice.hide_header_footer
    engine.box = choice.box
    engine.fields = fields
    hold = _hold(runtime, choice.key, mode, len(pages))
    images = {} if images is None else images
    settings = config.model(choice.key).preprocess
    if prepare is None and any(settings.model_dump().values()):
        prepare = partial(prepare_page, settings=settings)

    def prepared(page):
        original = page.image
        page = prepare(page)
        if page.image is not original:  # turned or straightened: keep what the boxes belong to
            images[page.index] = full_page(page)
        return page

    with hold as lease:
        def counted(done: int, total: int, result) -> None:
            if lease is not None:
                lease.done(1)
            if on_page:
                on_page(done, total, result)

        result = engine.ocr(pages, choice.task, on_page=counted, cancel=cancel,
                            prepare=prepared if prepare else None, on_text=on_text)
    if kept:
        result.pages = sorted([*kept, *result.pages], key=lambda page: page.index)
    if fields is not None:
        result.template = fields.template_key
        result.fields = collect(fields.template, [v for page in result.pages for v in page.fields],
                                engine.fields_not_found(fields))
    return Run(choice, result, images)


def chat(runtime: Runtime, choice: Choice, image: Image.Image, history: list[tuple[str, str]],
         question: str, on_text: Callable[[str], None] | None = None) -> str:
    """A question about a page, through the model the page was read with; ``on_text``
    receives the answer so far while it is generated."""
    mode = check_mode(runtime.config, choice.key, choice.mode)
    if mode == "cpu":  # Tesseract reads text; it cannot answer a question
        raise ConfigError(_("Chat needs a vision-language model: read the page in vLLM or local mode."))
    make_ready(runtime, choice.key, mode)
    engine = make_engine(runtime, choice.key, mode)
    with _hold(runtime, choice.key, mode, 1):
        return engine.chat(image, history, question, on_text=on_text)
