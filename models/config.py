"""The config schema: every model, its backends and its tasks, and the app's limits.

Models are data: adding one to config.yaml needs no code as long as its backends and
output kinds are ones the engines know. Validation names the key that is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      field_validator, model_validator)

from models.errors import ConfigError
from models.fields.template import Template, instruction, json_schema
from models.i18n import Localized, Message, _, n_

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config.yaml"

Mode = Literal["vllm", "local", "cpu"]
MODES: tuple[Mode, ...] = ("vllm", "local", "cpu")
# "Local" is a word to translate; the other two are names.
MODE_LABELS: dict[str, str] = {"vllm": "vLLM", "local": _("Local"), "cpu": "CPU"}

PositiveGB = Annotated[float, Field(ge=0)]
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|CREDENTIAL", re.IGNORECASE)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GPUBudget(Strict):
    vram_total_gb: PositiveGB
    vram_usable_gb: PositiveGB
    vram_recommended_max_gb: PositiveGB

    @model_validator(mode="after")
    def _ordered(self) -> GPUBudget:
        if not self.vram_recommended_max_gb <= self.vram_usable_gb <= self.vram_total_gb:
            raise ValueError(_("expected vram_recommended_max_gb <= vram_usable_gb <= vram_total_gb"))
        return self


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, which containers and taskset
    narrow, rather than the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Limits(Strict):
    max_upload_mb: Annotated[int, Field(gt=0)]
    max_pages: Annotated[int, Field(gt=0)]
    max_image_pixels: Annotated[int, Field(gt=0)]
    pdf_dpi: Annotated[int, Field(ge=36, le=600)]
    use_pdf_text_layer: bool = True
    # Pages Tesseract reads at once, one single-threaded process each; null: usable_cores().
    cpu_workers: Annotated[int, Field(ge=1)] = Field(default_factory=usable_cores)

    @field_validator("cpu_workers", mode="before")
    @classmethod
    def _all_cores(cls, value):
        return usable_cores() if value is None else value


def _sleep_level(value):
    """YAML 1.1 reads a bare ``off`` as False: False, "off" and 0 all mean off (0)."""
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return 0
    if isinstance(value, str) and value.strip() in ("1", "2"):
        return int(value)
    return value


# vLLM's sleep level for a switch away from a model: 0 (off: stop it), 1 (weights kept in host
# RAM), 2 (weights dropped, reloaded from disk on wake).
SleepLevel = Annotated[Literal[0, 1, 2], BeforeValidator(_sleep_level)]


class Switching(Strict):
    """How model switches behave; the defaults suit a 12 GB card and a 7 GB vLLM image."""

    poll_interval_s: Annotated[float, Field(gt=0, le=0.5)] = 0.25
    stop_timeout_s: Annotated[float, Field(gt=0)] = 30
    pages_wait_timeout_s: Annotated[float, Field(gt=0)] = 600
    gpu_memory_wait_s: Annotated[float, Field(ge=0)] = 60
    min_free_disk_gb: Annotated[float, Field(ge=0)] = 25
    # Where the arbiter's locks, its record and the vLLM API key live (default: the data dir).
    lock_dir: str | None = None
    # Unload the local model, or stop the container this app started or joined, after this
    # long with no page read or chat (Ollama's keep_alive, llama-swap's ttl); 0 = never.
    idle_unload_s: Annotated[float, Field(ge=0)] = 1800
    # Put a vLLM server to sleep instead of stopping it when another model takes the GPU
    # (off, 1 or 2; a model's vllm.sleep overrides it). Off until measured on a real card.
    sleep: SleepLevel = 0


class Requests(Strict):
    """How pages are sent to a vLLM server or an OpenAI-compatible endpoint."""

    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    timeout_s: Annotated[float, Field(gt=0)] = 300
    max_tokens: Annotated[int, Field(gt=0)] = 4096
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0


class RequestOverrides(Strict):
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None


class History(Strict):
    """The run history (managers/history.py): every finished run, kept under the data dir."""

    enabled: bool = True
    # A document larger than this is kept without its bytes: its result and page images stay,
    # its overlay and PDF export need the file again.
    max_document_mb: Annotated[float, Field(ge=0)] = 50
    # Past this, the oldest runs are removed first.
    max_total_mb: Annotated[float, Field(gt=0)] = 1000


class Jobs(Strict):
    """The HTTP API's jobs (managers/jobs/): kept in SQLite under the data dir, read by a
    worker in the API's process (backend sqlite) or by ``cli.py worker`` processes on other
    machines through Redis (backend redis)."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Unfinished jobs (queued, running, interrupted) past which a new one is refused (429).
    queue_size: Annotated[int, Field(ge=1)] = 100
    # Queued jobs go model by model so the GPU does not switch back and forth; a job that
    # has waited this long goes next whatever model is loaded, so none starves.
    max_wait_s: Annotated[float, Field(ge=0)] = 300
    # A job the server was reading when it stopped (kill -9, a crash): resume it from its
    # first unread page, requeue it to read again from the start, or keep it interrupted.
    on_restart: Literal["resume", "requeue", "keep"] = "resume"
    # A job interrupted this many times (its reader died each time: a page that crashes it)
    # fails, its pages read kept, instead of taking down one worker after another.
    max_interruptions: Annotated[int, Field(ge=1)] = 5
    # Finished jobs, with their files and results, are removed after this long; 0 = never.
    keep_days: Annotated[float, Field(ge=0)] = 7


class API(Strict):
    """The HTTP API (api.py)."""

    host: str = "127.0.0.1"  # another address is reachable from the network: api.py warns
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    max_upload_mb: Annotated[float, Field(gt=0)] = 50  # the files of one request together
    max_pages: Annotated[int, Field(gt=0)] = 200  # pages of one job
    # Jobs of one API key unfinished at once; the next is refused (429) until one ends.
    per_key_jobs: Annotated[int, Field(ge=1)] = 8
    # POST /v1/ocr: documents of at most this many pages, waited for at most this long
    # (past it the answer is the job to poll).
    ocr_max_pages: Annotated[int, Field(ge=1)] = 5
    ocr_wait_s: Annotated[float, Field(gt=0)] = 120
    retry_after_s: Annotated[int, Field(ge=1)] = 10  # a 429's Retry-After


class LocalMode(Strict):
    """Local mode's models (managers/kept_models.py): an unloaded one may stay in host
    memory, so loading it again copies it back instead of reading and building it."""

    # The last N unloaded models kept (pinned host memory when they ran on CUDA); 0 = none,
    # the default until the CUDA path is measured on a GPU (bench/local_gpu.py switch).
    keep_in_ram: Annotated[int, Field(ge=0, le=8)] = 0
    # Host memory all kept models may take together.
    keep_in_ram_gb: Annotated[float, Field(ge=0)] = 8
    # Never keep one that would leave less than this of the host's available memory.
    keep_min_available_gb: Annotated[float, Field(ge=0)] = 4


class UI(Strict):
    # auto: the browser's language (Russian when it is Russian, else English)
    language: Literal["auto", "en", "ru"] = "auto"


class Task(Strict):
    label: Localized
    prompt: str = ""
    # How the engine's answer is read: plain text, Markdown/HTML, or dots.ocr layout JSON.
    output: Literal["text", "markdown", "layout"] = "text"


# The task every model has besides its own: a template's fields (models/fields/).
FIELDS = "fields"


class FieldsTask(Task):
    """The fields task for one template: its instruction is the prompt, and engines that can
    constrain decoding hold the answer to ``json_schema``."""

    output: Literal["fields"] = "fields"
    template_key: str
    template: Template
    json_schema: dict


def fields_task(key: str, template: Template) -> FieldsTask:
    return FieldsTask(label=Localized({"en": "Fields", "ru": "Поля"}), prompt=instruction(template),
                      template_key=key, template=template, json_schema=json_schema(template))


class VLLMBackend(Strict):
    """A vLLM server in a container this app manages, or, with ``endpoint``, any
    OpenAI-compatible server elsewhere (no container is managed for it)."""

    served_model_name: str
    endpoint: Annotated[str, Field(pattern=r"^https?://")] | None = None
    api_key_env: str | None = None  # the environment variable holding the endpoint's key
    image: str = ""
    container_name: str = ""
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    # Published on loopback by default; any other address needs ``expose: true``.
    host: str = "127.0.0.1"
    expose: bool = False
    model: str = ""
    gpu: bool = True
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    max_model_len: Annotated[int, Field(gt=0)] = 8192
    args: list[str] = []
    env: dict[str, str] = {}
    # Secrets are passed by name from the host's environment when the container is created,
    # never written into config.yaml or docker-compose.yml.
    env_from_host: list[str] = []
    labels: dict[str, str] = {}  # extra container labels (the io.chatvlmllm.* ones are the manager's)
    # None keeps the image's own entrypoint (`vllm serve` in vllm/vllm-openai).
    entrypoint: list[str] | None = None
    # Extra bind mounts, as in compose: "HOST:CONTAINER" or "HOST:CONTAINER:ro".
    volumes: list[Annotated[str, Field(pattern=r"^[^:]+:[^:]+(:(ro|rw))?$")]] = []
    shm_size: str = "2g"
    start_timeout_s: Annotated[float, Field(gt=0)] = 900
    # This model's sleep level (off, 1, 2); unset: switching.sleep.
    sleep: SleepLevel | None = None

    @model_validator(mode="after")
    def _container_or_endpoint(self) -> VLLMBackend:
        if self.endpoint is None:
            missing = [f for f in ("image", "container_name", "model") if not getattr(self, f)]
            if missing:
                raise ValueError(_("needs {keys} (or an endpoint URL for a remote server)", keys=", ".join(missing)))
        if not self.loopback and not self.expose:
            raise ValueError(_("host {host} publishes the model server beyond this machine; "
                               "set expose: true to mean it, or use 127.0.0.1", host=self.host))
        secret = [k for k in self.env if _SECRET_NAME.search(k)]
        if secret:
            raise ValueError(_("env holds {names}: name secrets in env_from_host and set them in "
                               "the environment instead of writing them into the config", names=", ".join(secret)))
        if any(k.startswith("io.chatvlmllm.") for k in self.labels):
            raise ValueError(_("labels: the io.chatvlmllm.* labels are set by the manager"))
        if self.expose and self.sleep:
            # vLLM guards only /v1 with --api-key: /sleep and /wake_up would be open to the network.
            raise ValueError(_("sleep {level} cannot be used with expose: true, because vLLM's /sleep and /wake_up "
                               "are not behind its API key and anyone who reaches the port could put the model "
                               "to sleep; remove vllm.sleep or expose", level=str(self.sleep)))
        return self

    @property
    def loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @property
    def remote(self) -> bool:
        return self.endpoint is not None

    @property
    def base_url(self) -> str:
        """The server root, without /v1."""
        return (self.endpoint or f"http://{self.host}:{self.port}").rstrip("/").removesuffix("/v1")

    def command(self) -> list[str]:
        """The server's arguments; the image's entrypoint (or ``entrypoint``) runs them."""
        return ["--model", self.model, "--served-model-name", self.served_model_name,
                "--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}",
                "--max-model-len", str(self.max_model_len), *self.args]


class LocalBackend(Strict):
    model_id: str
    path: str | None = None
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"
    trust_remote_code: bool = False
    # Pages decoded together; unset: on a GPU as many as the VRAM left under the budget
    # holds (measured at load, at most 8), on the CPU 1.
    batch_pages: Annotated[int, Field(ge=1, le=64)] | None = None
    # Decoding compiled over a static KV cache (warmed up as part of the load); unset: on
    # for CUDA, off on the CPU, where compiling costs more than it gains.
    compile: bool | None = None


class CPUBackend(Strict):
    engine: Literal["tesseract"] = "tesseract"
    languages: Annotated[list[str], Field(min_length=1)] = ["rus", "eng"]
    psm: Annotated[int, Field(ge=0, le=13)] = 3


class Preprocess(Strict):
    """Which page-preparation steps may run (managers/prepare.py); each still looks at the
    page and leaves alone a page that does not need it."""

    orientation: bool = True   # turn a sideways or upside-down page upright
    deskew: bool = True        # straighten a page scanned at a slant (up to 15°)
    lighting: bool = False     # even out a shadow or uneven light (recognition only)
    denoise: bool = False      # remove speckle and JPEG blocks (recognition only)
    upscale: bool = False      # enlarge small text for the engine (recognition only)


# OCR engines read every pixel, so a model with a cpu backend gets every step by default;
# VLMs cope with light and noise, but a sideways or slanted page confuses them too.
OCR_PREPROCESS = {"lighting": True, "denoise": True, "upscale": True}


class ModelConfig(Strict):
    name: str
    description: Localized = Localized("")
    vram_gb: PositiveGB
    min_pixels: Annotated[int, Field(gt=0)] | None = None
    max_pixels: Annotated[int, Field(gt=0)] | None = None
    # Image sides are multiples of this (vision patch × merge): 28 for Qwen2-VL and dots.ocr, 32 for Qwen3-VL.
    resize_factor: Annotated[int, Field(ge=1)] = 28
    tasks: Annotated[dict[str, Task], Field(min_length=1)]
    requests: RequestOverrides = RequestOverrides()
    vllm: VLLMBackend | None = None
    local: LocalBackend | None = None
    cpu: CPUBackend | None = None
    preprocess: Preprocess = Preprocess()

    _modes: tuple[Mode, ...] = PrivateAttr(default=())

    @model_validator(mode="before")
    @classmethod
    def _preprocess_defaults(cls, data):
        if isinstance(data, dict) and data.get("cpu") is not None:
            given = data.get("preprocess") or {}
            if isinstance(given, dict):  # anything else is reported by validation
                data = {**data, "preprocess": {**OCR_PREPROCESS, **given}}
        return data

    @model_validator(mode="wrap")
    @classmethod
    def _remember_backend_order(cls, data, handler):
        model = handler(data)
        # The first backend written in the file is the model's default mode.
        keys = list(data) if isinstance(data, dict) else list(MODES)
        model._modes = tuple(k for k in keys if k in MODES and getattr(model, k) is not None)
        if not model._modes:
            raise ValueError(_("a model needs at least one backend: vllm, local or cpu"))
        return model

    @property
    def modes(self) -> tuple[Mode, ...]:
        return self._modes

    @property
    def default_task(self) -> str:
        return next(iter(self.tasks))

    def task(self, name: str | None) -> tuple[str, Task]:
        """The task called ``name`` (None: the first), or ConfigError naming the tasks there are."""
        name = name or self.default_task
        if name not in self.tasks:
            raise ConfigError(_("{model} has no task '{task}'; its tasks are: {tasks}.",
                                model=self.name, task=name, tasks=", ".join(self.tasks)))
        return name, self.tasks[name]


class AppConfig(Strict):
    default_model: str
    gpu: GPUBudget
    limits: Limits
    hf_cache_volume: str = "chatvlmllm-hf-cache"
    # vLLM's compile cache (torch.compile graphs, Inductor kernels), kept across containers.
    vllm_cache_volume: str = "chatvlmllm-vllm-cache"
    switching: Switching = Switching()
    requests: Requests = Requests()
    history: History = History()
    ui: UI = UI()
    jobs: Jobs = Jobs()
    api: API = API()
    local: LocalMode = LocalMode()
    models: Annotated[dict[str, ModelConfig], Field(min_length=1)]
    # Kinds of documents whose fields the fields task reads (models/fields/).
    templates: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], Template] = {}

    @model_validator(mode="after")
    def _cross_checks(self) -> AppConfig:
        if self.default_model not in self.models:
            raise ValueError(_("default_model '{key}' is not a key of models", key=self.default_model))
        if not any(m.cpu for m in self.models.values()):
            raise ValueError(_("models: at least one model needs a cpu backend to fall back on"))
        for key, m in self.models.items():
            if m.vllm and not m.vllm.remote:
                tokens = self.requests_for(key).max_tokens
                if tokens >= m.vllm.max_model_len:
                    raise ValueError(_("models.{key}: requests.max_tokens {tokens} leaves no room for the "
                                       "page in vllm.max_model_len {length}",
                                       key=key, tokens=str(tokens), length=str(m.vllm.max_model_len)))
        seen: dict[tuple[str, object], str] = {}
        for key, m in self.models.items():
            if m.vllm is None or m.vllm.remote:
                continue
            for field in ("port", "container_name", "served_model_name"):
                value = getattr(m.vllm, field)
                if (field, value) in seen:
                    raise ValueError(_("models.{key}.vllm.{field} {value} is also used by {other}",
                                       key=key, field=field, value=repr(value), other=seen[field, value]))
                seen[field, value] = key
        return self

    def model(self, key: str) -> ModelConfig:
        try:
            return self.models[key]
        except KeyError:
            raise ConfigError(_("Unknown model '{key}'; known models: {known}.",
                                key=key, known=", ".join(self.models))) from None

    def template(self, key: str | None) -> Template:
        """The template called ``key``, or ConfigError naming the templates there are."""
        if key not in self.templates:
            if key is None:
                raise ConfigError(_("The fields task needs a template; the templates are: {known}.",
                                    known=", ".join(self.templates)))
            raise ConfigError(_("Unknown template '{key}'; the templates are: {known}.",
                                key=key, known=", ".join(self.templates)))
        return self.templates[key]

    def requests_for(self, key: str) -> Requests:
        """The request settings for one model: the defaults with its overrides."""
        overrides = self.model(key).requests.model_dump(exclude_none=True)
        return self.requests.model_copy(update=overrides)

    def sleep_level(self, key: str) -> int:
        """The sleep level a switch away from ``key`` uses: its own vllm.sleep, else
        switching.sleep; 0 for a remote endpoint and for a model published with expose: true."""
        v = self.model(key).vllm
        if v is None or v.remote or v.expose:
            return 0
        return v.sleep if v.sleep is not None else self.switching.sleep

    @property
    def fallback_model(self) -> str:
        return next(k for k, m in self.models.items() if m.cpu)


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get("CHATVLMLLM_CONFIG") or DEFAULT_CONFIG)


def data_dir() -> Path:
    """Where local state lives (run history, start times, locks); created on first use."""
    default = Path.home() / ".local" / "share" / "chatvlmllm"
    path = Path(os.environ.get("CHATVLMLLM_DATA_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def lock_dir(config: AppConfig) -> Path:
    """The arbiter's folder: ``switching.lock_dir``, or the data dir. Several users of one
    machine share one arbiter through a group-owned setgid folder (README)."""
    path = Path(config.switching.lock_dir) if config.switching.lock_dir else data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _describe(err: dict) -> Message:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return _("{key}: unknown key", key=where)
    if err["type"] == "missing":
        return _("{key}: required key is missing", key=where)
    # Our own checks raise a Message; pydantic's built-in ones speak English only.
    raised = err.get("ctx", {}).get("error")
    msg = raised.args[0] if raised is not None and raised.args else err["msg"].removeprefix("Value error, ")
    if not where:  # a cross-field check names its keys in the message itself
        return Message.of(msg)
    if "input" in err and not isinstance(err["input"], (dict, list)):
        return _("{key}: {problem} (got {value})", key=where, problem=msg, value=repr(err["input"]))
    return _("{key}: {problem}", key=where, problem=msg)


def parse_config(data: object, source: str = "config") -> AppConfig:
    if not isinstance(data, dict):
        raise ConfigError(_("{source}: expected a mapping of settings at the top level.", source=source))
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problem = _describe(errors[0])
        if len(errors) == 1:
            raise ConfigError(_("{source}: {problem}.", source=source, problem=problem)) from None
        raise ConfigError(n_("{source}: {problem} (and {n} more problem).",
                             "{source}: {problem} (and {n} more problems).",
                             len(errors) - 1, source=source, problem=problem)) from None


def load_config(path: str | os.PathLike | None = None) -> AppConfig:
    path = config_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(_("Cannot read the config file {path}: {reason}.", path=path, reason=exc.strerror)) from None
    except UnicodeDecodeError as exc:
        # A file saved by an editor in a local code page (cp1251 for Russian) reads as garbage
        # or not at all; the fix is in the editor's "save as", so that is what we name.
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(_("{path} line {line} is not UTF-8 text; save the file in the UTF-8 encoding.",
                            path=path, line=str(line))) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or _("invalid YAML")
        if mark:
            raise ConfigError(_("{file} line {line}: {problem}.", file=path.name, line=str(mark.line + 1),
                                problem=problem)) from None
        raise ConfigError(_("{file}: {problem}.", file=path.name, problem=problem)) from None
    return parse_config(data, path.name)
