"""Local mode's engine: a Transformers model in this process reading pages like every engine.

The model itself is loaded, held and unloaded by ``managers.model_loader.ModelLoader``;
this module reads with it. Each document or chat reads through its own ``view()``: its
options and its cancel are its own, while the weights are shared — and dropped for every
view at once when the model is unloaded.

Speed on a GPU comes from three things, all set up by ``warm_up`` as a stage of the load:
- pages are decoded ``batch_size`` at a time (left padding; the size measured from the VRAM
  the budget leaves, at most ``MAX_BATCH``);
- decoding runs compiled over a static KV cache, with shapes that never change in use: the
  cache is sized once from the model's ``max_pixels`` and ``max_tokens`` and every batch is
  padded to one of two compiled sizes (1, and ``batch_size``), so nothing recompiles;
- every ``generate`` runs on one thread, ``gpu`` (the runtime's: one per process, for good),
  because CUDA graphs are recorded per thread: a new thread per document (or per load) would
  record them again, or fail.
A single page or a chat answer streams through Transformers' ``TextIteratorStreamer``.
The fields task's answers are held to the template's JSON Schema (managers/engines/constrained.py),
batched and compiled like any task's; warm-up sizes the static cache for the longest fields
prompt too, so a template's long instruction does not fall back to plain decoding.
CUDA out-of-memory in a batch frees memory, reads those pages one by one and halves the batch
size for every later batch of this load (compiling once more for the new size); out of memory
at one page calls ``on_oom`` (the loader's unload) and becomes one sentence.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models.answers import GROUNDING_MARK, Prepared, fit_to_model, page_from_answer, prompt_for
from managers.engines.constrained import Grammars
from models.config import AppConfig, FieldsTask, ModelConfig, Task, fields_task
from models.document import Page
from models.engine import Engine, not_read
from models.errors import Cancelled, EngineError, NotAvailable
from models.i18n import Message, _, n_
from models.result import OCRResult, PageResult

log = logging.getLogger(__name__)

MAX_BATCH = 8  # beyond 8 pages a batch gains little on a 2B model and delays the first page
WARM_UP_TOKENS = 4  # enough decode steps for the compiled step to be traced and its graphs recorded
# The backend torch.compile hands the decode step to; tests swap it to make compiling fail.
COMPILE_BACKEND: str | Callable = "inductor"


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        raise NotAvailable(_("Local mode needs PyTorch and Transformers — install them with: "
                             "scripts/install.sh --local")) from None
    return torch


def _is_oom(exc: BaseException) -> bool:
    torch = _torch()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def has_weights(model: ModelConfig) -> bool:
    """Whether the model's local weights are on this machine (its folder, or the HF cache)."""
    local = model.local
    if local.path:
        return (Path(local.path) / "config.json").exists()
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(local.model_id, "config.json"), str)


def batch_for(budget_bytes: int, one_row_peak: int, two_row_peak: int) -> int:
    """How many pages fit in one batch: rows added while the peak stays in the budget, measured
    from the peaks of a one-page and a two-page read at the largest page."""
    per_row = max(1, two_row_peak - one_row_peak)
    return max(1, min(MAX_BATCH, 1 + (budget_bytes - one_row_peak) // per_row))


@dataclass
class Batching:
    """Pages decoded at once, shared by every view of one load: lowered after out of memory,
    measured again only by the next load's warm-up."""
    pages: int = 1


@dataclass
class Answer:
    text: str
    cut: bool  # ended by max_tokens, not by the model
    seen: tuple[int, int]  # the image as the model saw it
    tokens: list[int]  # what was generated, up to the end-of-sequence


class LocalModel(Engine):
    engine_name = "transformers"
    shrinks_pages = True
    concurrency = 2  # the next batch is decoded and prepared while this one is on the GPU

    def __init__(self, key: str, model: ModelConfig, config: AppConfig, hf_model, processor, device: str,
                 load_seconds: float, memory_bytes: int, gpu: ThreadPoolExecutor):
        super().__init__(key, model)
        self.requests = config.requests_for(key)
        processor.tokenizer.padding_side = "left"  # batched rows end together, where generation starts
        # Shared by every view; "grammars": the fields task's schemas, compiled for this tokenizer.
        self._held = {"model": hf_model, "processor": processor, "gpu": gpu, "grammars": Grammars()}
        self.templates = config.templates
        self._batching = Batching()  # shared by every view too
        self.device = device
        self.load_seconds, self.memory_bytes = load_seconds, memory_bytes
        self.hide_header_footer = False
        self.box: tuple[int, int, int, int] | None = None
        self._stop = threading.Event()  # this view's cancel: generation stops at the next token
        self.on_oom: Callable[[], object] = lambda: None  # set by the loader: unload
        self.compiled = False
        self.max_cache_len = 0
        self.notes: list[Message] = []  # said once with every document read (a compile that failed)

    @property
    def batch_size(self) -> int:
        return self._batching.pages

    @batch_size.setter
    def batch_size(self, pages: int) -> None:
        self._batching.pages = pages

    @property
    def hf_model(self):
        return self._held.get("model")

    @property
    def processor(self):
        return self._held.get("processor")

    def view(self) -> LocalModel:
        """The same weights with options and a cancel of its own, for one document or chat."""
        view = copy.copy(self)
        view._stop = threading.Event()
        return view

    def drop(self) -> None:
        """Let go of the weights, in this object and every view of it (the loader unloads).
        Compiled code and CUDA graphs hold the weights too: they are reset on the thread
        that recorded them, after the work queued there before this call."""
        gpu = self._held.get("gpu")
        self._held.clear()
        if gpu is not None:
            gpu.submit(_reset_compiled if self.compiled else lambda: None).result()

    def abort(self) -> None:
        self._stop.set()

    # --- on the model's thread ------------------------------------------------------------------

    def _submit(self, work: Callable[[], object], gpu: ThreadPoolExecutor | None = None):
        gpu = gpu or self._held.get("gpu")
        try:
            if gpu is not None:
                return gpu.submit(work)
        except RuntimeError:  # the interpreter is shutting down
            pass
        raise self._unloaded()

    def _unloaded(self) -> EngineError:
        return EngineError(_("{model} was unloaded before this page was read; load it again.", model=self.model.name))

    def _inputs(self, images: list[Image.Image], messages: list[list[dict]], processor=None):
        processor = processor or self.processor
        texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
        return processor(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)

    def _generate(self, images: list[Image.Image], messages: list[list[dict]],
                  on_text: Callable[[str], None] | None = None, max_new_tokens: int | None = None,
                  schema: dict | None = None, **options) -> list[Answer]:
        """Answers for pages read together, in their order; ``on_text`` streams a single page;
        ``schema``: the JSON Schema every answer is held to."""
        torch = _torch()
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        if self._stop.is_set():
            raise Cancelled(_("Reading was cancelled."))
        # Taken once: an unload (another page's out of memory, say) may clear them meanwhile.
        model, processor, gpu, grammars = (self._held.get(name) for name in ("model", "processor", "gpu", "grammars"))
        if model is None or processor is None or gpu is None or grammars is None:
            raise self._unloaded()
        rows = len(images)
        if self.compiled:  # the compiled shapes: one page, or a full batch (the last row repeated)
            pad = (1 if rows == 1 else self.batch_size) - rows
            images, messages = images + images[-1:] * pad, messages + messages[-1:] * pad
        inputs = self._inputs(images, messages, processor)
        max_new = max_new_tokens or self.requests.max_tokens
        if self.compiled and inputs["input_ids"].shape[1] + max_new > self.max_cache_len:
            options.setdefault("cache_implementation", "dynamic")  # longer than compiled for: plain
        if schema is not None:  # made for the rows as padded: one matcher per row generated
            options["logits_processor"] = LogitsProcessorList([grammars.processor(schema, model, processor.tokenizer)])
        stop = self._stop

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        sampling = ({"do_sample": True, "temperature": self.requests.temperature}
                    if self.requests.temperature > 0 else {"do_sample": False})
        streamer = (TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
                    if on_text is not None and rows == 1 else None)

        def generate():
            try:
                with torch.inference_mode():
                    return model.generate(**inputs, max_new_tokens=max_new, streamer=streamer,
                                          stopping_criteria=StoppingCriteriaList([Cancel()]), **sampling, **options)
            except BaseException:
                if streamer is not None:
                    streamer.end()  # the reader below must not wait for words that never come
                raise

        future = self._submit(generate, gpu)
        if streamer is not None:
            text = ""
            try:
                for piece in streamer:
                    if piece:
                        text += piece
                        on_text(text)
            except BaseException:  # the reader is gone (a Streamlit rerun): nobody wants the rest
                stop.set()
                raise
        out = future.result()
        new = out[:rows, inputs["input_ids"].shape[1]:]
        ends = model.generation_config.eos_token_id
        ends = set(ends if isinstance(ends, list) else [ends])
        patch = getattr(processor.image_processor, "patch_size", 14)
        answers = []
        for row, tokens in enumerate(new.tolist()):
            stop_at = next((n for n, token in enumerate(tokens) if token in ends), None)
            kept = tokens if stop_at is None else tokens[:stop_at]
            grid = inputs["image_grid_thw"][row].tolist()
            answers.append(Answer(processor.decode(kept, skip_special_tokens=True),
                                  stop_at is None and len(tokens) >= max_new,
                                  (int(grid[2]) * patch, int(grid[1]) * patch), kept))
        return answers

    # --- pages -----------------------------------------------------------------------------------

    def _messages(self, page: Page, task: Task) -> tuple[Image.Image, list[dict]]:
        seen = fit_to_model(page.image, self.model)
        prompt = prompt_for(task, self.box, page.size, seen.size)
        return seen, [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]

    def read_batch(self, pages: list[Page], task: Task) -> list[PageResult]:
        requests = [self._messages(page, task) for page in pages]
        on_text = self.on_text
        stream = (lambda text: on_text(pages[0].index, text)) if on_text and len(pages) == 1 else None
        schema = task.json_schema if isinstance(task, FieldsTask) else None
        try:
            answers = self._generate([image for image, _ in requests], [m for _, m in requests], stream,
                                     schema=schema)
        except Exception as exc:
            if not _is_oom(exc):
                raise
            answers = None  # out of memory: handled below, once the error's frames are let go
        if answers is None:
            if len(pages) > 1:  # the page loop reads these pages again one by one
                # Later batches would run out again: halve this one's size from now on. Batches
                # in flight beside it fail at the same size and lower it no further.
                self.batch_size = min(self.batch_size, max(1, len(pages) // 2))
                log.warning("out of memory in a batch of %d pages; batches of %d from now on",
                            len(pages), self.batch_size)
                _free_cuda()
                raise EngineError(n_("Out of memory reading {n} page at once.",
                                     "Out of memory reading {n} pages at once.", len(pages)))
            self.on_oom()
            raise EngineError(_("The GPU ran out of memory reading page {page}; {model} was unloaded. Lower its "
                                "max_pixels or pick a smaller model.", page=pages[0].index + 1,
                                model=self.model.name)) from None
        if self._stop.is_set():  # stopped by a cancel: what came is a part, not the page
            return [not_read(page.index) for page in pages]
        return [page_from_answer(answer.text, answer.cut, Prepared(page.index, page.size, answer.seen, messages),
                                 task, self.requests.max_tokens, self.hide_header_footer, page)
                for page, answer, (_, messages) in zip(pages, answers, requests)]

    def read_page(self, page: Page, task: Task) -> PageResult:
        return self.read_batch([page], task)[0]

    def ocr(self, pages, task=None, **kwargs) -> OCRResult:
        result = super().ocr(pages, task, **kwargs)
        if self.notes and result.pages:
            result.pages[0].warnings[:0] = self.notes
        return result

    def chat(self, image: Image.Image, history: list[tuple[str, str]], question: str,
             on_text: Callable[[str], None] | None = None) -> str:
        turns = [*history, ("user", question)]
        messages = [{"role": role, "content": ([{"type": "image"}, {"type": "text", "text": text}] if n == 0
                                                else [{"type": "text", "text": text}])}
                    for n, (role, text) in enumerate(turns)]
        return self._generate([fit_to_model(image, self.model)], [messages], on_text)[0].text

    # --- the load's last stage -------------------------------------------------------------------

    def _largest_request(self) -> tuple[Image.Image, list[dict], int]:
        """The largest page the model is given (A4 at ``max_pixels``), with the longest task
        prompt (a template's fields instruction included), and how many prompt tokens it makes."""
        unboxed = [task for task in self.model.tasks.values() if not task.prompt.endswith(GROUNDING_MARK)]
        unboxed += [fields_task(key, template) for key, template in self.templates.items()]
        longest = max(unboxed or self.model.tasks.values(), key=lambda task: len(task.prompt))
        image, messages = self._messages(Page(0, Image.new("RGB", (1654, 2339), "white")), longest)
        inputs = self._inputs([image], [messages])
        merge = getattr(self.processor.image_processor, "merge_size", 2)
        a4 = int(inputs["image_grid_thw"][0].prod()) // merge**2
        # A page of another shape may round to a few more image tokens than A4, never more
        # than max_pixels allows.
        most = self.model.max_pixels // self.model.resize_factor**2 if self.model.max_pixels else a4
        return image, messages, int(inputs["input_ids"].shape[1]) - a4 + max(a4, most)

    def warm_up(self, config: AppConfig, on_progress: Callable[[Message], None] | None = None,
                usually_s: float | None = None, cancel: threading.Event | None = None) -> None:
        """Choose the batch size and compile decoding for the shapes used from now on.
        A compile that fails leaves plain decoding and one note, never an error. ``cancel``
        stops it before each of its generates and at every token of one, raising Cancelled;
        a compile under way is finished first (torch cannot stop one midway)."""
        own_stop, self._stop = self._stop, cancel or self._stop  # what _generate's stops look at
        try:
            self._warm_up(config, on_progress, usually_s)
        finally:
            self._stop = own_stop

    def _warm_up(self, config: AppConfig, on_progress: Callable[[Message], None] | None,
                 usually_s: float | None) -> None:
        local = self.model.local
        cuda = self.device == "cuda"
        compile_on = local.compile if local.compile is not None else cuda
        image, messages, prompt_tokens = self._largest_request()
        self.max_cache_len = prompt_tokens + self.requests.max_tokens + 16  # 16: a grounding task's box
        if local.batch_pages:
            self.batch_size = local.batch_pages
        elif cuda:
            self.batch_size = self._measure_batch(config, image, messages)
        if not compile_on:
            return
        from transformers import CompileConfig

        settings = CompileConfig(backend=COMPILE_BACKEND, dynamic=False, mode="reduce-overhead" if cuda else "default")
        settings._compile_all_devices = True  # forced on the CPU by config, as on CUDA
        self.hf_model.generation_config.compile_config = settings
        self.hf_model.generation_config.cache_implementation = "static"
        self.hf_model.generation_config.max_cache_len = self.max_cache_len
        if on_progress:
            on_progress(_("compiling for faster reading… usually {seconds:.0f} s", seconds=usually_s) if usually_s
                        else _("compiling for faster reading… the first time takes a minute or two"))
        self.compiled = True
        try:
            for rows in sorted({1, self.batch_size}):
                self._generate([image] * rows, [messages] * rows, max_new_tokens=WARM_UP_TOKENS,
                               min_new_tokens=WARM_UP_TOKENS)
        except Cancelled:
            raise
        except Exception as exc:
            log.warning("compiling %s failed; reading without it", self.key, exc_info=True)
            self._submit(_reset_compiled).result()
            self.compiled = False
            self.hf_model.generation_config.cache_implementation = None
            self.hf_model.generation_config.compile_config = None
            _free_cuda()
            self.notes.append(_("Compiled decoding failed for {model} ({error}); pages are read without it, "
                                "more slowly.", model=self.model.name, error=type(exc).__name__))
            if on_progress:
                on_progress(self.notes[-1])

    def _measure_batch(self, config: AppConfig, image: Image.Image, messages: list[dict]) -> int:
        """Peaks of a one-page and a two-page read of the largest page (static cache included),
        and how many rows the budget's VRAM then holds."""
        torch = _torch()
        budget = min(config.gpu.vram_usable_gb * 1e9, torch.cuda.get_device_properties(0).total_memory)
        peaks = []
        for rows in (1, 2):
            _free_cuda()
            torch.cuda.reset_peak_memory_stats()
            try:
                self._generate([image] * rows, [messages] * rows, max_new_tokens=1, cache_implementation="static",
                               max_cache_len=self.max_cache_len, disable_compile=True)
                peaks.append(torch.cuda.max_memory_allocated())
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                break
        _free_cuda()
        if len(peaks) < 2:  # two pages do not fit beside the model: one at a time
            return 1
        return batch_for(int(budget * 0.95), peaks[0], peaks[1])  # 5 %: CUDA graphs' pools and fragments


def _reset_compiled() -> None:
    """Forget compiled code and CUDA graphs (they keep the weights alive); runs on the thread
    that recorded the graphs."""
    torch = _torch()
    torch._dynamo.reset()
    try:
        from torch._inductor.cudagraph_trees import reset_cudagraph_trees
    except ImportError:
        return
    reset_cudagraph_trees()


def _free_cuda() -> None:
    import gc

    torch = _torch()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
