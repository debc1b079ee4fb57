"""Which engine reads pages for a model in a mode.

Capabilities are data: a mode is offered once its engine factory is registered here.
"""

from __future__ import annotations

from collections.abc import Callable

from managers.arbiter import Arbiter
from managers.containers import State
from managers.openai_engine import OpenAIEngine
from models.config import MODE_LABELS, AppConfig, Mode
from models.engine import Engine
from models.errors import NotAvailable
from models.tesseract_engine import TesseractEngine


def _vllm(config: AppConfig, key: str) -> Engine:
    model = config.model(key)
    if model.vllm.remote:
        return OpenAIEngine(config, key)
    arbiter = Arbiter(config)
    if arbiter.manager.status()[key].state is not State.READY:
        raise NotAvailable(f"{model.name} is not running — start it first "
                           f"(Switch in the sidebar, or cli.py switch {key}).")
    return OpenAIEngine(config, key, arbiter)


ENGINES: dict[str, Callable[[AppConfig, str], Engine]] = {
    "cpu": lambda config, key: TesseractEngine(key, config.model(key)),
    "vllm": _vllm,
}


def not_built(mode: Mode) -> str | None:
    if mode in ENGINES:
        return None
    return (f"{MODE_LABELS[mode]} mode is not available yet in this version — "
            "use CPU mode (Tesseract) for now")


def make_engine(config: AppConfig, key: str, mode: Mode | None = None) -> Engine:
    model = config.model(key)
    mode = mode or model.modes[0]
    if mode not in model.modes:
        modes = ", ".join(MODE_LABELS[m] for m in model.modes)
        raise NotAvailable(f"{model.name} has no {MODE_LABELS[mode]} backend; it runs in: {modes}.")
    if reason := not_built(mode):
        raise NotAvailable(reason + ".")
    return ENGINES[mode](config, key)
