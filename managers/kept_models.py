"""Local models kept in host memory after an unload (``local.keep_in_ram``), so that loading
one again copies it back instead of reading and building it.

- On CUDA an unload moves the weights — parameters, buffers, and tensors a module keeps for
  itself (Qwen2-VL's ``rope_deltas``) — into page-locked host memory, so the copy back is one
  DMA, and the GPU keeps nothing of the model. On the CPU the built model simply stays.
- Kept: the last ``keep_in_ram`` unloaded, within ``keep_in_ram_gb`` together, and never one
  that would leave the host less than ``keep_min_available_gb`` of MemAvailable; the oldest
  goes first. A kept model holds no claim: to the arbiter it is unloaded.
- Tied weights stay tied: a parameter is moved in place (``.data``), once however many
  modules share it.
- Compiled code and CUDA graphs do not outlive the unload (LocalModel.drop resets them: the
  graphs hold GPU memory, and the compiled code calls into them), so the warm-up after a copy
  back compiles again, from the compile cache.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from managers.engines.local import _torch
from managers.host_memory import available_bytes
from models.config import LocalMode

log = logging.getLogger(__name__)


def model_bytes(hf_model) -> int:
    """Bytes of the model's tensors, each shared one counted once."""
    seen = {id(t): t for t in (*hf_model.parameters(), *hf_model.buffers())}
    return sum(t.numel() * t.element_size() for t in seen.values())


def move(hf_model, to) -> None:
    """Every tensor of the model through ``to``: parameters in place (the same objects, so
    ties hold), buffers and plain tensor attributes replaced, each shared tensor once."""
    torch = _torch()
    done: dict[int, tuple] = {}  # the original is held too, so that its id is not reused meanwhile

    def once(tensor):
        if id(tensor) not in done:
            done[id(tensor)] = (tensor, to(tensor))
        return done[id(tensor)][1]

    for parameter in hf_model.parameters():  # deduplicated: a tied weight moves once
        parameter.data = to(parameter.data)
    for module in hf_model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            setattr(module, name, once(buffer))
        for name, value in list(vars(module).items()):
            if torch.is_tensor(value):
                module.__dict__[name] = once(value)


def _tensors(hf_model) -> list:
    """Every tensor ``move`` moves, once."""
    torch = _torch()
    found = {id(p): p for p in hf_model.parameters()}
    for module in hf_model.modules():
        found.update((id(b), b) for b in module.buffers(recurse=False))
        found.update((id(v), v) for v in vars(module).values() if torch.is_tensor(v))
    return list(found.values())


def to_host(hf_model):
    """CUDA weights into one page-locked host buffer, returned once the copies are done. One
    buffer registered with CUDA (as torch's checkpoint stager does) takes exactly the model's
    bytes, where torch's pinned allocator would round each tensor up to a power of two."""
    torch = _torch()
    from torch.cuda._pin_memory_utils import pin_memory

    sizes = [_aligned(t.numel() * t.element_size()) for t in _tensors(hf_model) if t.is_cuda]
    flat = torch.empty(sum(sizes), dtype=torch.uint8)
    pin_memory(flat.data_ptr(), flat.numel())
    used = 0

    def pinned(tensor):
        nonlocal used
        if not tensor.is_cuda:
            return tensor
        size = tensor.numel() * tensor.element_size()
        host = flat[used:used + size].view(tensor.dtype).view(tensor.shape)
        used += _aligned(size)
        host.copy_(tensor, non_blocking=True)
        return host

    try:
        move(hf_model, pinned)
        torch.cuda.synchronize()
    except BaseException:
        torch.cuda.synchronize()
        unpin(flat)
        raise
    return flat


def _aligned(size: int) -> int:
    return (size + 255) // 256 * 256  # every view starts where any dtype may


def to_device(hf_model, device: str, pinned) -> None:
    """The kept weights back onto ``device``; returns once they are there, their host buffer
    no longer page-locked (it goes with the last view of it)."""
    torch = _torch()
    try:
        move(hf_model, lambda tensor: tensor.to(device, non_blocking=True))
    finally:
        torch.cuda.synchronize()
        unpin(pinned)


def unpin(pinned) -> None:
    if pinned is not None:
        from torch.cuda._pin_memory_utils import unpin_memory

        unpin_memory(pinned.data_ptr())


@dataclass
class Kept:
    key: str
    hf_model: object
    processor: object
    device: str
    bytes: int  # the host memory it takes
    pinned: object = None  # the page-locked buffer the weights of a CUDA model are in


class KeptModels:
    """What the loader keeps, oldest first. Changed under the loader's lock, which a load holds
    for its whole length; ``_guard`` lets ``keys`` and ``bytes`` answer meanwhile."""

    def __init__(self, settings: LocalMode):
        self.settings = settings
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self._guard = threading.Lock()

    def keys(self) -> list[str]:
        with self._guard:
            return list(self._kept)

    def bytes(self) -> int:
        with self._guard:
            return sum(kept.bytes for kept in self._kept.values())

    def take(self, key: str) -> Kept | None:
        with self._guard:
            return self._kept.pop(key, None)

    def keep(self, key: str, hf_model, processor, device: str) -> bool:
        """Keep an unloaded model, the oldest evicted to make room; whether it was kept."""
        self._let_go(key)  # two loads of it at once: the second read it from disk again
        size = model_bytes(hf_model)
        if not self._room_for(size):
            return False
        # Kept on the CPU, the model already takes its memory; from CUDA it needs all of it anew.
        need = size if device == "cuda" else 0
        while True:
            available = available_bytes()
            if available is None or available - need >= self.settings.keep_min_available_gb * 1e9:
                break
            if not self._kept:
                log.info("%s not kept in host memory: %.1f GB available", key, available / 1e9)
                return False
            self.evict()
        try:
            pinned = to_host(hf_model) if device == "cuda" else None
        except Exception:  # an unload must not fail for want of keeping: the model is let go
            log.warning("%s could not be kept in host memory", key, exc_info=True)
            return False
        size = pinned.numel() if pinned is not None else size
        with self._guard:
            self._kept[key] = Kept(key, hf_model, processor, device, size, pinned)
        return True

    def put(self, kept: Kept) -> None:
        """One taken out to be loaded, and not loaded after all, kept again as the newest."""
        if kept.key in self.keys():  # kept again meanwhile (another load's unload): that copy is newer
            unpin(kept.pinned)
            return
        if self._room_for(kept.bytes):
            with self._guard:
                self._kept[kept.key] = kept

    def _room_for(self, size: int) -> bool:
        """Make room for one more of ``size`` bytes, evicting the oldest; whether it fits."""
        settings = self.settings
        if settings.keep_in_ram == 0 or size > settings.keep_in_ram_gb * 1e9:
            return False
        while self._kept and (len(self._kept) >= settings.keep_in_ram
                              or self.bytes() + size > settings.keep_in_ram_gb * 1e9):
            self.evict()
        return True

    def evict(self) -> None:
        """Let the oldest kept model go."""
        self._let_go(None)

    def _let_go(self, key: str | None) -> None:
        """Let ``key`` go if kept (None: the oldest); no reference to it outlives the collection."""
        with self._guard:
            if key is None:
                _, kept = self._kept.popitem(last=False)
            elif key in self._kept:
                kept = self._kept.pop(key)
            else:
                return
        unpin(kept.pinned)
        del kept
        gc.collect()  # the model's reference cycles hold its memory

    def clear(self) -> None:
        while self._kept:
            self.evict()
