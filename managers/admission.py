"""The one admission rule: may this model take the GPU now? Pure: the caller reads NVML."""

from __future__ import annotations

from models.config import AppConfig, ModelConfig
from models.errors import NotAvailable


def over_budget(model: ModelConfig, config: AppConfig) -> str | None:
    usable = config.gpu.vram_usable_gb
    if model.vram_gb > usable:
        return (f"{model.name} needs {model.vram_gb:g} GB of VRAM, over the {usable:g} GB usable "
                "on this card (gpu.vram_usable_gb) — pick a smaller model")
    return None


def admit(model: ModelConfig, config: AppConfig, free_gb: float | None) -> list[str]:
    """Warnings to show, or NotAvailable with the numbers when the model must not start.
    ``free_gb`` is the free VRAM NVML reports after other models stopped (None: unknown)."""
    if reason := over_budget(model, config):
        raise NotAvailable(reason + ".")
    if free_gb is not None and model.vram_gb > free_gb:
        raise NotAvailable(
            f"{model.name} needs {model.vram_gb:g} GB of VRAM but only {free_gb:.1f} GB are free; "
            "close other GPU programs (nvidia-smi lists them) and try again.")
    limit = config.gpu.vram_recommended_max_gb
    if model.vram_gb > limit:
        return [f"{model.name} needs {model.vram_gb:g} GB, above the recommended {limit:g} GB: "
                "close other GPU programs before starting it"]
    return []
