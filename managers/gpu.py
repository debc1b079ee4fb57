"""What NVIDIA GPUs this machine has, read through NVML (no CUDA context is created)."""

from __future__ import annotations

from dataclasses import dataclass

from models.i18n import Message, _


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    total_gb: float
    free_gb: float


@dataclass(frozen=True)
class GPUProbe:
    gpus: tuple[GPU, ...]
    error: Message | None = None  # why none could be read, when none could

    @property
    def free_gb(self) -> float | None:
        return self.gpus[0].free_gb if self.gpus else None

    @property
    def total_gb(self) -> float | None:
        return self.gpus[0].total_gb if self.gpus else None


def probe_gpus() -> GPUProbe:
    try:
        import pynvml
    except ImportError:
        return GPUProbe((), "no NVIDIA GPU found (the NVML bindings are not installed)")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return GPUProbe((), _("no NVIDIA GPU found (no NVIDIA driver answers)"))
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(GPU(i, name.decode() if isinstance(name, bytes) else name,
                            mem.total / 1e9, mem.free / 1e9))
    except pynvml.NVMLError as exc:
        return GPUProbe((), _("the NVIDIA driver could not be read ({reason})", reason=exc))
    finally:
        pynvml.nvmlShutdown()
    return GPUProbe(tuple(gpus), None if gpus else _("no NVIDIA GPU found"))
