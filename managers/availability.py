"""Can a model run in a mode on this machine, and if not, why and what to do.

``probe_host`` gathers the facts (Docker, NVML, Tesseract); ``why_not`` is a pure
function of those facts and the config, so every rule is unit-testable without them.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from managers.admission import admit, over_budget
from managers.docker_host import docker_error
from managers.gpu import GPUProbe, probe_gpus
from models.config import MODE_LABELS, AppConfig, Mode, ModelConfig
from models.errors import NotAvailable
from models.i18n import Message, _
from managers.engines.local import has_weights
from managers.engines.tesseract import INSTALL_HINT, installed_languages


@dataclass(frozen=True)
class HostFacts:
    docker_error: Message | None
    gpu: GPUProbe
    tesseract_languages: frozenset[str] | None  # None: Tesseract is not installed
    transformers: bool = True  # PyTorch and Transformers are importable (local mode)
    # (model_id, path) of the local backends whose weights are on this machine
    local_weights: frozenset[tuple[str, str | None]] = frozenset()

    @property
    def local_device(self) -> str:
        """Where a local model would run: torch sees the GPUs NVML sees."""
        return "cuda" if self.gpu.gpus else "cpu"


def probe_host(config: AppConfig) -> HostFacts:
    try:
        languages = installed_languages()
    except NotAvailable:
        languages = None
    needs_docker = any(m.vllm and not m.vllm.remote for m in config.models.values())
    transformers = all(importlib.util.find_spec(name) for name in ("torch", "transformers"))
    weights = frozenset((m.local.model_id, m.local.path) for m in config.models.values()
                        if m.local and has_weights(m))
    return HostFacts(docker_error() if needs_docker else None, probe_gpus(), languages, transformers, weights)


def why_not(model: ModelConfig, mode: Mode, host: HostFacts, config: AppConfig) -> Message | None:
    """None when ``model`` can run in ``mode`` on this machine; otherwise one sentence
    saying why not and what to do."""
    if mode not in model.modes:
        return _("{model} has no {mode} backend", model=model.name, mode=MODE_LABELS[mode])
    if mode == "cpu":
        assert model.cpu is not None
        if host.tesseract_languages is None:
            return _("Tesseract is not installed — install it with: {command}", command=INSTALL_HINT)
        missing = [lang for lang in model.cpu.languages if lang not in host.tesseract_languages]
        if missing:
            packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
            return _("Tesseract lacks {languages} — install: sudo apt-get install {packages}",
                     languages=", ".join(missing), packages=packages)
        return None
    if mode == "vllm":
        assert model.vllm is not None
        if model.vllm.remote:
            key_env = model.vllm.api_key_env
            if key_env and not os.environ.get(key_env):
                return _("the endpoint's API key is not set — export {variable}=…", variable=key_env)
            return None
        if host.docker_error:
            return host.docker_error
        if model.vllm.gpu and not host.gpu.gpus:
            return _("no NVIDIA GPU found — this entry requests a GPU; use CPU mode, "
                     "or set gpu: false for a CPU build of vLLM")
    if mode == "local":
        if not host.transformers:
            return _("local mode needs PyTorch and Transformers — install them with: scripts/install.sh --local")
        if (model.local.model_id, model.local.path) not in host.local_weights:
            where = model.local.path or model.local.model_id
            if model.local.path:
                return _("no model at {path}", path=where)
            return _("the weights are not on this machine — download them with: hf download {model}", model=where)
    uses_gpu = (mode == "vllm" and model.vllm.gpu) or (mode == "local" and host.gpu.gpus)
    if uses_gpu and (reason := over_budget(model, config)):
        return reason
    return None


def vram_warning(model: ModelConfig, config: AppConfig) -> Message | None:
    try:
        warnings = admit(model, config, None)
    except NotAvailable:
        return None  # why_not already says so
    return warnings[0] if warnings else None


def default_choice(config: AppConfig, host: HostFacts) -> tuple[Mode, str]:
    """The mode and model the app opens with: default_model in its first mode that can run
    here, else the CPU fallback."""
    key = config.default_model
    model = config.models[key]
    for mode in model.modes:
        if why_not(model, mode, host, config) is None:
            return mode, key
    return "cpu", config.fallback_model


def models_for_mode(config: AppConfig, mode: Mode) -> list[str]:
    return [key for key, m in config.models.items() if mode in m.modes]
