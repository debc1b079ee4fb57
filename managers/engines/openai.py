"""Reading pages through an OpenAI-compatible server: a vLLM container this app manages,
or a remote endpoint named in config.yaml.

Each page goes as a base64 data URL, resized into the model's pixel range the way its
processor would (so layout boxes come back in pixels we know), with the task's prompt
verbatim. Pages of a document are sent concurrently — vLLM batches them — with at most
``requests.concurrency`` in flight; results come back in page order, a failed page keeps
its error, and a cancel stops the pages not yet sent.
"""

from __future__ import annotations

import base64
import io
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial

from PIL import Image

from models.answers import Prepared, fit_to_model, page_from_answer, prompt_for
from models.config import AppConfig, Task
from models.document import Page
from models.engine import Engine, OnPage, PageSource
from models.errors import EngineError
from models.result import OCRResult, PageResult

class OpenAIEngine(Engine):
    engine_name = "vllm"
    shrinks_pages = True

    def __init__(self, config: AppConfig, key: str, arbiter=None):
        import openai

        model = config.model(key)
        super().__init__(key, model)
        assert model.vllm is not None
        self.vllm = model.vllm
        self.requests = config.requests_for(key)
        self.arbiter = None if model.vllm.remote else arbiter
        if model.vllm.remote:
            self.engine_name = "remote"
        api_key = os.environ.get(model.vllm.api_key_env or "", "") or "EMPTY"
        self.client = openai.OpenAI(base_url=model.vllm.base_url + "/v1", api_key=api_key,
                                    timeout=self.requests.timeout_s, max_retries=0)
        self.hide_header_footer = False
        self.box: tuple[int, int, int, int] | None = None  # for the grounding task, page pixels

    # --- one request ------------------------------------------------------------------------

    def prepare(self, image: Image.Image) -> Image.Image:
        """The image as the model will see it: resized into its pixel range, sides multiples
        of 28, so the processor leaves it as it is and boxes map back exactly."""
        if self.model.max_pixels is None:
            return image
        return fit_to_model(image, self.model)

    def ask(self, messages: list[dict], page_number: int | None = None) -> tuple[str, str]:
        """The answer's text and its finish reason; EngineError with one sentence on failure."""
        import openai

        where = f"page {page_number}" if page_number else "the question"
        try:
            response = self.client.chat.completions.create(
                model=self.vllm.served_model_name, messages=messages,
                max_tokens=self.requests.max_tokens, temperature=self.requests.temperature)
        except openai.APITimeoutError:
            raise EngineError(f"The model server did not answer {where} within "
                              f"{self.requests.timeout_s:g} s (requests.timeout_s).") from None
        except openai.APIConnectionError:
            raise EngineError(f"Cannot reach the model server at {self.vllm.base_url} for {where}; "
                              "is it running?") from None
        except openai.APIStatusError as exc:
            detail = re.sub(r"^Error code: \d+ - ", "", (exc.message or "").splitlines()[0] if exc.message else "")[:200]
            raise EngineError(f"The model server refused {where} ({exc.status_code}): {detail}") from None
        choice = response.choices[0]
        return choice.message.content or "", choice.finish_reason or ""

    @staticmethod
    def image_part(image: Image.Image) -> dict:
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=1)
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        return {"type": "image_url", "image_url": {"url": url}}

    def prepare_page(self, page: Page, task: Task) -> Prepared:
        seen = self.prepare(page.image)
        prompt = prompt_for(task, self.box, page.size, seen.size)
        messages = [{"role": "user", "content": [self.image_part(seen), {"type": "text", "text": prompt}]}]
        return Prepared(page.index, page.size, seen.size, messages)

    def answer(self, request: Prepared, task: Task, source: PageSource | None = None) -> PageResult:
        """Send a prepared page and read the answer as the task says. ``source`` gives the
        page again for picture crops (only layouts with pictures need it)."""
        answer, finish = self.ask(request.messages, request.index + 1)
        return page_from_answer(answer, finish == "length", request, task, self.requests.max_tokens,
                                self.hide_header_footer, source)

    def read_page(self, page: Page, task: Task) -> PageResult:
        return self.answer(self.prepare_page(page, task), task, page)

    def chat(self, image: Image.Image, history: list[tuple[str, str]], question: str) -> str:
        """Answer a question about a page, given the conversation so far (role, text)."""
        messages: list[dict] = []
        turns = [*history, ("user", question)]
        for n, (role, text) in enumerate(turns):
            if n == 0:
                content = [self.image_part(self.prepare(image)), {"type": "text", "text": text}]
                messages.append({"role": "user", "content": content})
            else:
                messages.append({"role": role, "content": text})
        return self.ask(messages)[0]

    # --- a document ---------------------------------------------------------------------------

    def ocr(self, pages: Sequence[PageSource], task: str | None = None, on_page: OnPage | None = None,
            cancel: threading.Event | None = None) -> OCRResult:
        name, spec = self.task(task)
        cancel = cancel or threading.Event()
        started = time.perf_counter()
        results: dict[int, PageResult] = {}
        lease = self.arbiter.lease(self.key, len(pages)) if self.arbiter else _NoLease()
        with lease as held, ThreadPoolExecutor(self.requests.concurrency, thread_name_prefix="page") as pool:
            try:
                # Every page is decoded and encoded before the first is sent: where the model
                # server shares the CPU (vLLM's CPU build), decoding beside it runs several
                # times slower and starves its batch. An encoded page is small (≤ max_pixels).
                queue: list[tuple[PageSource, Prepared]] = []
                for source in pages:
                    prepared = self.guarded(source.index, partial(self._prepare_source, source, spec))
                    if isinstance(prepared, PageResult):
                        results[source.index] = prepared
                        held.done(1)
                    else:
                        queue.append((source, prepared))
                in_flight: dict[Future, PageSource] = {}
                while queue or in_flight:
                    while queue and len(in_flight) < self.requests.concurrency and not cancel.is_set():
                        source, request = queue.pop(0)
                        step = partial(self.answer, request, spec, source)
                        in_flight[pool.submit(self.guarded, source.index, step)] = source
                    if cancel.is_set():
                        for source, _ in queue:
                            results[source.index] = PageResult(
                                index=source.index, error=f"Page {source.index + 1} was not read: cancelled.")
                        held.done(len(queue))
                        queue = []
                    if not in_flight:
                        break
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        source = in_flight.pop(future)
                        results[source.index] = future.result()
                        held.done(1)
                        if on_page:
                            on_page(len(results), len(pages), results[source.index])
            except BaseException:
                cancel.set()  # an interrupted caller (e.g. a Streamlit rerun) sends nothing more
                raise
        ordered = [results[source.index] for source in pages if source.index in results]
        return OCRResult(model=self.key, engine=self.engine_name, task=name,
                         seconds=round(time.perf_counter() - started, 3), pages=ordered)

    def _prepare_source(self, source: PageSource, task: Task) -> Prepared:
        page = source.load(self.model.max_pixels)
        prepared = self.prepare_page(page, task)
        prepared.warnings = list(page.warnings)  # read_page's callers add them on the other path
        return prepared


class _NoLease:
    """A remote endpoint's pages: nothing on this machine's GPU to hold."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def done(self, pages: int = 1) -> None:
        pass
