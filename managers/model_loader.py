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
  memory when it is not. Unless it failed, the model stays in host memory
  (managers/kept_models.py, ``local.keep_in_ram``): loading it again copies it back instead
  of reading and building it, and ``kept()`` lists those, oldest first.
- CUDA out-of-memory while loading or reading unloads the model and becomes one sentence.
- The load's last stage is the engine's warm-up (batch size, compiled decoding), timed so the
  next one can say how long it usually takes; the compiler's cache lives in the data dir,
  so a second load, or the app started again, compiles far less. A cancel stops the warm-up
  at its next token or step (a compile under way ends first) and unloads the model.
- Each load is timed stage by stage (stop: the unload of what was there; memory: its memory
  given back; start: read and built, or copied back; warm_up) in the start-time store, as a
  ``load`` from disk or a ``kept`` one from host memory, to say how long the next will take.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from managers.admission import admit
from managers.arbiter import Arbiter
from managers.engines.local import LocalModel, _is_oom, _torch, has_weights
from managers.kept_models import Kept, KeptModels, to_device
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
    kept: str | None = None  # the model's name, when it stays in host memory
    memory_s: float = 0.0  # seconds to give its memory back and check it

    @property
    def message(self) -> Message:
        if not self.leftover_bytes and self.kept:
            return _("freed {freed:.2f} GB; {model} stays in host memory, so loading it again is fast",
                     freed=self.freed_bytes / 1e9, model=self.kept)
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
        self._kept = KeptModels(config.local)
        self.last_unload: UnloadReport | None = None  # of the model the load under way made way for
        self._baseline: int | None = None  # GPU bytes allocated before the first model loaded
        self._lock = threading.RLock()

    def current(self) -> LocalModel | None:
        return self._current

    def kept(self) -> list[str]:
        """The models kept in host memory, oldest first."""
        return self._kept.keys()

    def kept_bytes(self) -> int:
        """Host memory the kept models take (page-locked, for those that ran on CUDA)."""
        return self._kept.bytes()

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
        # Taken out of the kept ones first: the claim unloads the model there now, whose keeping
        # could evict it. Held only in this list, which the load empties: a copy back that
        # fails must leave no reference behind.
        with self._lock:
            reserved = [self._kept.take(key)]
        self.last_unload = None
        asked = time.perf_counter()
        try:
            return self.arbiter.claim_local(key, lambda: self._load_claimed(
                key, model, source, reserved, asked, on_progress, cancel), on_event, cancel)
        finally:
            if reserved and reserved[0] is not None:  # refused before the load began: still kept
                with self._lock:
                    self._kept.put(reserved.pop())

    def _load_claimed(self, key: str, model: ModelConfig, source: str, reserved: list[Kept | None], asked: float,
                      on_progress, cancel: threading.Event | None) -> LocalModel:
        with self._lock:
            if self._current is not None and self._current.key == key:
                return self._current
            kept = reserved.pop()
            if self._current is not None:  # the claim unloads it; here only if it came meanwhile
                self.unload_all_models()
            # What held the GPU went (the claim's unload, or a vLLM server stopped): those seconds
            # are the stop, but for the unload's freeing of memory.
            memory_s = self.last_unload.memory_s if self.last_unload else 0.0
            stop_s = max(0.0, time.perf_counter() - asked - memory_s)
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
                started = time.perf_counter()
                if kept is not None:
                    if on_progress:
                        on_progress(_("loading {model} from host memory", model=model.name))
                    self._current = self._restore(kept, model, device, on_progress)
                else:
                    if on_progress:
                        on_progress(_("loading {model} from {source}", model=model.name, source=source))
                    self._current = self._load(key, model, source, device, on_progress)
                kind = "load" if kept is None else "kept"
                start_s = time.perf_counter() - started
                warm_up_s = self._warm_up(self._current, kind, on_progress, cancel)
                if cancel is not None and cancel.is_set():  # after the warm-up's last look
                    raise Cancelled
                StartTimes(lock_dir(self.config)).record(key, kind, {
                    "stop": stop_s, "memory": memory_s, "start": start_s, "warm_up": warm_up_s})
                return self._current
            except Cancelled:  # the warm-up's own sentence speaks of reading
                kept = None  # a copy back cut midway is nothing to keep
                self.unload_all_models(keep=False)
                raise Cancelled(_("Loading {model} was cancelled; it was unloaded.", model=model.name)) from None
            except BaseException:
                kept = None
                self.unload_all_models(keep=False)
                raise

    def _warm_up(self, engine: LocalModel, kind: str, on_progress, cancel: threading.Event | None) -> float:
        """The engine's warm-up, timed; its seconds. A warm-up after a load from disk is the
        compile's own record; one after a copy back is a stage of the ``kept`` records."""
        # Set, not defaulted: torch writes its own default into the environment on first use.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(data_dir() / "compile-cache")
        times, name = StartTimes(lock_dir(self.config)), f"compile:{engine.key}:{engine.device}"
        if kind == "load":
            usually = times.estimate(name, "warm_up")
        else:
            seen = [t.stages["warm_up"] for t in times.timings(engine.key, "kept") if "warm_up" in t.stages]
            usually = statistics.median(seen) if seen else times.estimate(name, "warm_up")
        started = time.perf_counter()
        engine.warm_up(self.config, on_progress, usually, cancel)
        seconds = time.perf_counter() - started
        if engine.compiled and kind == "load":
            times.record(name, "warm_up", {"warm_up": seconds})
        return seconds

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
        return self._engine(key, model, hf_model, processor, device, seconds, memory)

    def _engine(self, key, model: ModelConfig, hf_model, processor, device: str, seconds: float,
                memory: int) -> LocalModel:
        engine = LocalModel(key, model, self.config, hf_model, processor, device, seconds, memory, self.gpu)
        engine.on_oom = lambda: self.unload_all_models(keep=False)
        return engine

    def _restore(self, kept: Kept, model: ModelConfig, device: str, on_progress) -> LocalModel:
        """A kept model back on ``device``: its weights copied back, nothing read or built."""
        started = time.perf_counter()
        if device == "cuda":
            try:
                to_device(kept.hf_model, device, kept.pinned)
            except Exception as exc:
                if _is_oom(exc):
                    raise NotAvailable(_("{model} did not fit in GPU memory while loading; close other GPU "
                                         "programs or pick a smaller model.", model=model.name)) from None
                raise
        seconds = time.perf_counter() - started
        if on_progress:
            on_progress(_("{model} ready in {seconds:.1f} s, {memory:.2f} GB", model=model.name,
                          seconds=seconds, memory=kept.bytes / 1e9))
        return self._engine(kept.key, model, kept.hf_model, kept.processor, device, seconds, kept.bytes)

    def unload_all_models(self, keep: bool = True) -> UnloadReport:
        """Unload the model; ``keep``: it may stay in host memory (not after a failure)."""
        with self._lock:
            current = self._current
            self._current = None
            torch = _torch()
            cuda = torch.cuda.is_available()
            before = torch.cuda.memory_allocated() if cuda else 0
            report = UnloadReport()
            if current is not None:
                parts = (current.key, current.hf_model, current.processor, current.device)
                current.drop()  # views of it (runs, chats) may outlive this call
                if keep and parts[1] is not None and self._kept.keep(*parts):
                    report.kept = current.model.name
                del parts
            unloaded = current is not None
            del current
            started = time.perf_counter()
            gc.collect()
            if cuda:
                # cuBLAS keeps a workspace per handle in the caching allocator (33 MiB on Hopper),
                # which would otherwise stay allocated after the model is gone.
                clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
                if clear_workspaces:
                    clear_workspaces()
                torch.cuda.empty_cache()
            if cuda:
                after = torch.cuda.memory_allocated()
                report.freed_bytes = max(0, before - after)
                report.leftover_bytes = max(0, after - (self._baseline or 0))
                if report.leftover_bytes:
                    report.holders = _cuda_holders()
            report.memory_s = time.perf_counter() - started
            if unloaded:
                self.last_unload = report
            self.arbiter.forget_local()
            return report

    def free_kept(self) -> None:
        """Let every model kept in host memory go (the runtime closes)."""
        with self._lock:
            if self.kept():
                self._kept.clear()


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
