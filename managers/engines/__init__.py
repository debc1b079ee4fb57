"""Which engine reads pages for a model in a mode: one factory per mode."""

from __future__ import annotations

from collections.abc import Callable

from managers.arbiter import Arbiter
from managers.containers import State
from managers.engines.openai import OpenAIEngine
from models.config import MODE_LABELS, AppConfig, Mode
from models.engine import Engine
from models.errors import NotAvailable
from managers.engines.tesseract import TesseractEngine


def _vllm(config: AppConfig, key: str) -> Engine:
    model = config.model(key)
    if model.vllm.remote:
        return OpenAIEngine(config, key)
    arbiter = Arbiter(config)
    if arbiter.manager.status()[key].state is not State.READY:
        raise NotAvailable(f"{model.name} is not running — start it first "
                           f"(Switch in the sidebar, or cli.py switch {key}).")
    return OpenAIEngine(config, key, arbiter)


def _local(config: AppConfig, key: str) -> Engine:
    from managers.model_loader import ModelLoader  # PyTorch is optional; import on use

    return ModelLoader(config, Arbiter(config)).load_model(key)


ENGINES: dict[str, Callable[[AppConfig, str], Engine]] = {
    "cpu": lambda config, key: TesseractEngine(key, config.model(key)),
    "vllm": _vllm,
    "local": _local,
}


def make_engine(config: AppConfig, key: str, mode: Mode | None = None) -> Engine:
    model = config.model(key)
    mode = mode or model.modes[0]
    if mode not in model.modes:
        modes = ", ".join(MODE_LABELS[m] for m in model.modes)
        raise NotAvailable(f"{model.name} has no {MODE_LABELS[mode]} backend; it runs in: {modes}.")
    return ENGINES[mode](config, key)
