"""Local mode: models loaded in-process with Hugging Face Transformers, one at a time.

Contract:
- ``load_model(key)`` returns a LocalModel that reads pages like every engine
  (``ocr``, ``process_image``). It loads inside the arbiter's claim (stopping the
  project's vLLM containers; refusing while another live process holds a local model),
  refuses a model that does not fit in the VRAM left, and loads offline only — missing
  weights give the command that downloads them.
- ``unload_all_models()`` drops every reference this process holds (the model lives only
  here, never in a Streamlit cache), collects garbage, empties the CUDA cache, and checks
  that allocated GPU memory is back at its baseline; the report names what still holds
  memory when it is not.
- CUDA out-of-memory while loading or reading unloads the model and becomes one sentence.
- The load's last stage is the engine's warm-up (batch size, compiled decoding), timed so the
  next one can say how long it usually takes; the compiler's cache lives in the data dir,
  so a second load, or the app started again, compiles far less. A cancel stops the warm-up
  at its next token or step (a compile under way ends first) and unloads the model.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from managers.admission import admit
from managers.arbiter import Arbiter
from managers.engines.local import LocalModel, _is_oom, _torch, has_weights
from managers.start_times import StartTimes
from models.config import AppConfig, ModelConfig, data_dir, lock_dir
from models.errors import Cancelled, ChatVLMError, NotAvailable
from models.i18n import Message, _

log = logging.getLogger(__name__)


@dataclass
class UnloadReport:
    freed_bytes: int = 0
    leftover_bytes: int = 0
    holders: list[str] = field(default_factory=list)  # what still holds GPU memory, if anything

    @property
    def message(self) -> Message:
        if not self.leftover_bytes:
            return _("freed {freed:.2f} GB", freed=self.freed_bytes / 1e9)
        if not self.holders:
            return _("freed {freed:.2f} GB; {left:.2f} GB still allocated, held by objects outside Python's reach",
                     freed=self.freed_bytes / 1e9, left=self.leftover_bytes / 1e9)
        return _("freed {freed:.2f} GB; {left:.2f} GB still allocated, held by {holders}",
                 freed=self.freed_bytes / 1e9, left=self.leftover_bytes / 1e9, holders=", ".join(self.holders))

    def __str__(self) -> str:
        return str(self.message)


class ModelLoader:
    """The holder of a runtime's one local model (managers/runtime.py: one per process).
    ``arbiter`` claims the GPU for it and is given this loader's unload; ``gpu`` is the
    thread every generate of its models runs on.

    Lock order (the arbiter's): a load runs inside ``Arbiter.claim_local`` — switch.lock
    first, then this loader's lock — and an unload asked for by a vLLM switch runs inside the
    switch the same way; an unload on its own (out of memory) takes only this lock.
    """

    def __init__(self, config: AppConfig, arbiter: Arbiter, gpu: ThreadPoolExecutor):
        self.config = config
        self.arbiter = arbiter
        self.gpu = gpu
        self._current: LocalModel | None = None
        self._baseline: int | None = None  # GPU bytes allocated before the first model loaded
        self._lock = threading.RLock()

    def current(self) -> LocalModel | None:
        return self._current

    def load_model(self, key: str, on_progress=None, cancel: threading.Event | None = None) -> LocalModel:
        model = self.config.model(key)
        if model.local is None:
            raise NotAvailable(_("{model} has no local backend in config.yaml; use vLLM mode for it.",
                                 model=model.name))
        current = self._current
        if current is not None and current.key == key:
            return current
        source = self._weights(model)  # a missing download is refused before anything stops
        on_event = on_progress and (lambda e: on_progress(e.message))
        return self.arbiter.claim_local(
            key, lambda: self._load_claimed(key, model, source, on_progress, cancel), on_event, cancel)

    def _load_claimed(self, key: str, model: ModelConfig, source: str, on_progress,
                      cancel: threading.Event | None) -> LocalModel:
        with self._lock:
            if self._current is not None and self._current.key == key:
                return self._current
            if self._current is not None:
                self.unload_all_models()
            torch = _torch()
            device = "cuda" if torch.cuda.is_available() else "cpu"
            try:
                if device == "cuda":
                    free = torch.cuda.mem_get_info()[0]
                    for warning in admit(model, self.config, free / 1e9):
                        log.warning(warning)
                    if self._baseline is None:
                        self._baseline = torch.cuda.memory_allocated()
                elif on_progress:
                    on_progress(_("no CUDA GPU: {model} runs on the CPU, which is slow", model=model.name))
                if on_progress:
                    on_progress(_("loading {model} from {source}", model=model.name, source=source))
                self._current = self._load(key, model, source, device, on_progress)
                self._warm_up(self._current, on_progress, cancel)
                if cancel is not None and cancel.is_set():  # after the warm-up's last look
                    raise Cancelled
                return self._current
            except Cancelled:  # the warm-up's own sentence speaks of reading
                self.unload_all_models()
                raise Cancelled(_("Loading {model} was cancelled; it was unloaded.", model=model.name)) from None
            except BaseException:
                self.unload_all_models()
                raise

    def _warm_up(self, engine: LocalModel, on_progress, cancel: threading.Event | None) -> None:
        # Set, not defaulted: torch writes its own default into the environment on first use.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(data_dir() / "compile-cache")
        times, name = StartTimes(lock_dir(self.config)), f"compile:{engine.key}:{engine.device}"
        started = time.perf_counter()
        engine.warm_up(self.config, on_progress, times.estimate(name, "warm_up"), cancel)
        if engine.compiled:
            times.record(name, "warm_up", {"warm_up": time.perf_counter() - started})

    @staticmethod
    def _weights(model: ModelConfig) -> str:
        """A local directory, or the model id when its weights are in the Hugging Face cache."""
        local = model.local
        if not has_weights(model):
            if local.path:
                raise NotAvailable(_("No model at {path} (models.*.local.path): the folder has no config.json.",
                                     path=local.path))
            raise NotAvailable(_("The weights of {model} are not on this machine — download them with: "
                                 "hf download {model}", model=local.model_id))
        return local.path or local.model_id

    def _load(self, key, model: ModelConfig, source: str, device: str, on_progress) -> LocalModel:
        torch = _torch()
        from transformers import AutoModelForImageTextToText, AutoProcessor, __version__

        dtype = getattr(torch, model.local.dtype) if model.local.dtype != "auto" else "auto"
        if device == "cpu" and dtype is torch.float16:
            dtype = torch.float32  # half precision is slow or missing on CPUs
        before = torch.cuda.memory_allocated() if device == "cuda" else 0
        started = time.perf_counter()
        try:
            processor = AutoProcessor.from_pretrained(source, local_files_only=True,
                                                      trust_remote_code=model.local.trust_remote_code)
            hf_model = AutoModelForImageTextToText.from_pretrained(
                source, dtype=dtype, local_files_only=True, trust_remote_code=model.local.trust_remote_code)
            hf_model = hf_model.to(device).eval()
        except ChatVLMError:
            raise
        except Exception as exc:
            if _is_oom(exc):
                raise NotAvailable(_("{model} did not fit in GPU memory while loading; close other GPU "
                                     "programs or pick a smaller model.", model=model.name)) from None
            if model.local.trust_remote_code:
                raise NotAvailable(_("{model}'s own model code does not run on Transformers {version} ({error}); "
                                     "use vLLM mode for this model.", model=model.name, version=__version__,
                                     error=type(exc).__name__)) from None
            raise NotAvailable(_("{model} could not be loaded from {source}: {reason}",
                                 model=model.name, source=source, reason=exc)) from None
        seconds = time.perf_counter() - started
        memory = (torch.cuda.memory_allocated() - before) if device == "cuda" else sum(
            p.numel() * p.element_size() for p in hf_model.parameters())
        if on_progress:
            on_progress(_("{model} ready in {seconds:.1f} s, {memory:.2f} GB", model=model.name,
                          seconds=seconds, memory=memory / 1e9))
        engine = LocalModel(key, model, self.config, hf_model, processor, device, seconds, memory, self.gpu)
        engine.on_oom = self.unload_all_models
        return engine

    def unload_all_models(self) -> UnloadReport:
        with self._lock:
            current = self._current
            self._current = None
            torch = _torch()
            cuda = torch.cuda.is_available()
            before = torch.cuda.memory_allocated() if cuda else 0
            if current is not None:
                current.drop()  # views of it (runs, chats) may outlive this call
            del current
            gc.collect()
            if cuda:
                # cuBLAS keeps a workspace per handle in the caching allocator (33 MiB on Hopper),
                # which would otherwise stay allocated after the model is gone.
                clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
                if clear_workspaces:
                    clear_workspaces()
                torch.cuda.empty_cache()
            report = UnloadReport()
            if cuda:
                after = torch.cuda.memory_allocated()
                report.freed_bytes = max(0, before - after)
                report.leftover_bytes = max(0, after - (self._baseline or 0))
                if report.leftover_bytes:
                    report.holders = _cuda_holders()
            self.arbiter.forget_local()
            return report


def _cuda_holders(limit: int = 5) -> list[str]:
    """Live tensors on the GPU, largest first, described by type and shape."""
    torch = _torch()
    found = []
    for obj in gc.get_objects():
        try:
            if torch.is_tensor(obj) and obj.is_cuda:
                found.append((obj.numel() * obj.element_size(), f"{type(obj).__name__}{tuple(obj.shape)}"))
        except Exception:  # objects that fail on inspection are not tensors we can name
            continue
    return [name for _, name in sorted(found, reverse=True)[:limit]]
