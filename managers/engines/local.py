"""Local mode's engine: a Transformers model in this process reading pages like every engine.

The model itself is loaded, held and unloaded by ``managers.model_loader.ModelLoader``;
this module only reads with it. Each document or chat reads through its own ``view()``:
its options and its cancel are its own, while the weights are shared — and dropped for
every view at once when the model is unloaded. CUDA out-of-memory while reading calls
``on_oom`` (the loader's unload) and becomes one sentence.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from models.answers import Prepared, fit_to_model, page_from_answer, prompt_for
from models.config import AppConfig, ModelConfig, Task
from models.document import Page
from models.engine import Engine
from models.errors import EngineError, NotAvailable
from models.result import PageResult


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        raise NotAvailable("Local mode needs PyTorch and Transformers — install them with: "
                           "scripts/install.sh --local") from None
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


class LocalModel(Engine):
    engine_name = "transformers"
    shrinks_pages = True

    def __init__(self, key: str, model: ModelConfig, config: AppConfig, hf_model, processor, device: str,
                 load_seconds: float, memory_bytes: int):
        super().__init__(key, model)
        self.requests = config.requests_for(key)
        self._held = {"model": hf_model, "processor": processor}  # shared by every view
        self.device = device
        self.load_seconds, self.memory_bytes = load_seconds, memory_bytes
        self.hide_header_footer = False
        self.box: tuple[int, int, int, int] | None = None
        self._lock = threading.Lock()  # one generate at a time on one model, across views
        self._stop = threading.Event()  # this view's cancel: generation stops at the next token
        self.on_oom: Callable[[], object] = lambda: None  # set by the loader: unload

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
        """Let go of the weights, in this object and every view of it (the loader unloads)."""
        self._held.clear()

    def abort(self) -> None:
        self._stop.set()

    def _generate(self, image: Image.Image, messages: list[dict]) -> tuple[str, bool, tuple[int, int]]:
        torch = _torch()
        if self.hf_model is None:
            raise EngineError(f"{self.model.name} was unloaded before this page was read; load it again.")
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[text], images=[image], return_tensors="pt").to(self.device)
        grid = inputs["image_grid_thw"][0].tolist()
        patch = getattr(self.processor.image_processor, "patch_size", 14)
        seen = (int(grid[2]) * patch, int(grid[1]) * patch)
        sampling = ({"do_sample": True, "temperature": self.requests.temperature}
                    if self.requests.temperature > 0 else {"do_sample": False})
        from transformers import StoppingCriteria, StoppingCriteriaList

        stop = self._stop

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return stop.is_set()

        with self._lock, torch.inference_mode():
            out = self.hf_model.generate(**inputs, max_new_tokens=self.requests.max_tokens,
                                         stopping_criteria=StoppingCriteriaList([Cancelled()]), **sampling)
        new = out[0, inputs["input_ids"].shape[1]:]
        answer = self.processor.decode(new, skip_special_tokens=True)
        return answer, len(new) >= self.requests.max_tokens, seen

    def read_page(self, page: Page, task: Task) -> PageResult:
        seen = fit_to_model(page.image, self.model)
        prompt = prompt_for(task, self.box, page.size, seen.size)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        try:
            answer, cut, seen_size = self._generate(seen, messages)
        except Exception as exc:
            if not _is_oom(exc):
                raise
            self.on_oom()
            raise EngineError(f"The GPU ran out of memory reading page {page.index + 1}; {self.model.name} "
                              "was unloaded. Lower its max_pixels or pick a smaller model.") from None
        request = Prepared(page.index, page.size, seen_size, messages, [])
        return page_from_answer(answer, cut, request, task, self.requests.max_tokens,
                                self.hide_header_footer, page)

    def chat(self, image: Image.Image, history: list[tuple[str, str]], question: str) -> str:
        turns = [*history, ("user", question)]
        messages = [{"role": role, "content": ([{"type": "image"}, {"type": "text", "text": text}] if n == 0
                                                else [{"type": "text", "text": text}])}
                    for n, (role, text) in enumerate(turns)]
        return self._generate(fit_to_model(image, self.model), messages)[0]
