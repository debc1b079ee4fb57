"""The one admission rule: may this model take the GPU now? Pure: the caller reads NVML."""

from __future__ import annotations

from models.config import AppConfig, ModelConfig
from models.errors import NotAvailable
from models.i18n import Message, _


def over_budget(model: ModelConfig, config: AppConfig) -> Message | None:
    usable = config.gpu.vram_usable_gb
    if model.vram_gb > usable:
        return _("{model} needs {need:g} GB of VRAM, over the {usable:g} GB usable on this card "
                 "(gpu.vram_usable_gb) — pick a smaller model", model=model.name, need=model.vram_gb, usable=usable)
    return None


def vllm_reservation_gb(model: ModelConfig, total_gb: float) -> float:
    """What vLLM really takes: it reserves gpu_memory_utilization of the card's whole memory
    up front (weights, KV cache, graphs), whatever the model's own size."""
    assert model.vllm is not None
    return model.vllm.gpu_memory_utilization * total_gb


def admit(model: ModelConfig, config: AppConfig, free_gb: float | None,
          total_gb: float | None = None) -> list[Message]:
    """Warnings to show, or NotAvailable with the numbers when the model must not start.
    ``free_gb`` is the free VRAM NVML reports after other models stopped (None: unknown);
    ``total_gb``, the card's memory, is given for a vLLM server, which reserves a share of it."""
    if reason := over_budget(model, config):
        raise NotAvailable(_("{reason}.", reason=reason))
    if free_gb is not None and total_gb is not None:
        need = vllm_reservation_gb(model, total_gb)
        if need > free_gb:
            raise NotAvailable(_(
                "{model}'s vLLM server reserves {need:.1f} GB (gpu_memory_utilization {share:g} × {total:.1f} GB) "
                "but only {free:.1f} GB are free; close other GPU programs or lower its gpu_memory_utilization.",
                model=model.name, need=need, share=model.vllm.gpu_memory_utilization, total=total_gb, free=free_gb))
    elif free_gb is not None and model.vram_gb > free_gb:
        raise NotAvailable(_(
            "{model} needs {need:g} GB of VRAM but only {free:.1f} GB are free; close other GPU programs "
            "(nvidia-smi lists them) and try again.", model=model.name, need=model.vram_gb, free=free_gb))
    limit = config.gpu.vram_recommended_max_gb
    if model.vram_gb > limit:
        return [_("{model} needs {need:g} GB, above the recommended {limit:g} GB: close other GPU "
                  "programs before starting it", model=model.name, need=model.vram_gb, limit=limit)]
    return []
