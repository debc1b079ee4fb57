"""Model containers as data, and the pure decisions about them.

Nothing here talks to Docker: ``plan_switch`` decides what must stop, sleep, be removed,
woken or started for a model to become active (``sleep_or_stop`` is the sleep part);
``derive_state`` names a container's state; ``container_spec`` is the exact create request.
SingleContainerManager carries them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from models.config import AppConfig, ModelConfig
from models.errors import SwitchError
from models.i18n import Message, _

# The project's label namespace: only containers carrying LABEL_MANAGED are ever touched.
LABEL_MANAGED = "io.chatvlmllm.managed"
LABEL_MODEL = "io.chatvlmllm.model"
CONTAINER_PORT = 8000
HF_CACHE_IN_CONTAINER = "/root/.cache/huggingface"
# vLLM's VLLM_CACHE_ROOT for root: compiled graphs land here, so it lives on a volume that
# outlasts the container and a model's next start skips compiling.
VLLM_CACHE_IN_CONTAINER = "/root/.cache/vllm"
# vLLM serves /sleep, /wake_up, /is_sleeping and /collective_rpc only with both of these.
SLEEP_FLAG = "--enable-sleep-mode"
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"


class State(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"
    # A vLLM server put to sleep (switching.sleep): its container runs and /health answers,
    # but its weights and KV cache left the GPU and /v1 is refused until it is woken.
    ASLEEP = "asleep"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    status: str  # Docker's: created, running, restarting, paused, removing, exited, dead
    managed: bool
    model: str | None = None
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""
    compose: bool = False
    # Created with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1: its server can sleep.
    can_sleep: bool = False

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused")

    @classmethod
    def from_attrs(cls, attrs: dict) -> ContainerInfo:
        """From the Docker API's container inspect (or list) document."""
        labels = attrs.get("Config", {}).get("Labels") or attrs.get("Labels") or {}
        state = attrs.get("State") or {}
        name = attrs.get("Name") or (attrs.get("Names") or [""])[0]
        config = attrs.get("Config") or {}
        args = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        return cls(
            id=attrs.get("Id", ""),
            name=name.lstrip("/"),
            status=state.get("Status", "") if isinstance(state, dict) else str(state),
            managed=labels.get(LABEL_MANAGED) == "true",
            model=labels.get(LABEL_MODEL),
            exit_code=int(state.get("ExitCode", 0)) if isinstance(state, dict) else 0,
            oom_killed=bool(state.get("OOMKilled")) if isinstance(state, dict) else False,
            started_at=state.get("StartedAt", "") if isinstance(state, dict) else "",
            finished_at=state.get("FinishedAt", "") if isinstance(state, dict) else "",
            compose="com.docker.compose.project" in labels,
            can_sleep=SLEEP_FLAG in args and f"{DEV_MODE_ENV}=1" in (config.get("Env") or []),
        )


@dataclass(frozen=True)
class ModelStatus:
    key: str
    state: State
    port: int | None = None
    since: str | None = None
    container: str | None = None
    detail: Message = Message("")


def derive_state(info: ContainerInfo | None, api_ready: bool, asleep: bool = False) -> State:
    if info is None:
        return State.STOPPED
    if info.status == "removing":
        return State.STOPPING
    if asleep and info.status == "running":
        return State.ASLEEP
    if info.status in ("running", "restarting", "created"):
        return State.READY if api_ready and info.status == "running" else State.STARTING
    if info.status == "paused":
        return State.FAILED
    # exited or dead: 0 and SIGTERM's 143 are stops; anything else (137 from the OOM
    # killer, a Python traceback's 1, argparse's 2) is a failure worth showing.
    return State.STOPPED if info.exit_code in (0, 143) and not info.oom_killed else State.FAILED


@dataclass(frozen=True)
class SleepFacts:
    """What the sleep decisions read; the manager gathers them (NVML, /proc/meminfo, config).

    ``levels``: each model's effective sleep level (0: off); ``refusals``: why a model may not
    sleep although switching.sleep is on (expose: true); ``kept_gb``: what each model's server
    kept on the GPU the last time it slept, as measured (absent: never measured);
    ``weights_gb``: each model's weights (vram_gb), which level 1 keeps in host RAM;
    ``need_gb``: what the target's vLLM server reserves; ``total_gb``: the card's memory
    (None: NVML cannot be read); ``ram_gb``: the host's MemAvailable."""

    levels: Mapping[str, int] = field(default_factory=dict)
    refusals: Mapping[str, Message] = field(default_factory=dict)
    kept_gb: Mapping[str, float] = field(default_factory=dict)
    weights_gb: Mapping[str, float] = field(default_factory=dict)
    need_gb: float | None = None
    total_gb: float | None = None
    ram_gb: float | None = None


@dataclass(frozen=True)
class Sleep:
    """A server to put to sleep; ``measure``: nothing measured yet, so whether the target
    still fits beside it is read from NVML once it sleeps."""

    info: ContainerInfo
    level: int
    measure: bool = False


@dataclass(frozen=True)
class SwitchPlan:
    stop: tuple[ContainerInfo, ...] = ()
    remove: tuple[ContainerInfo, ...] = ()
    reuse: ContainerInfo | None = None  # already running and awake: only wait until it is ready
    start_existing: ContainerInfo | None = None  # created by docker compose: start it as is
    sleep: tuple[Sleep, ...] = ()  # awake servers to put to sleep, one at a time, before the target
    wake: ContainerInfo | None = None  # the target's server sleeps: wake it
    # Why each stopped server (by container id) was not put to sleep although sleep is on for it.
    why_stopped: Mapping[str, Message] = field(default_factory=dict)

    @property
    def create(self) -> bool:
        return self.reuse is None and self.start_existing is None and self.wake is None


def sleep_or_stop(c: ContainerInfo, asleep: bool, facts: SleepFacts, kept_so_far: float
                  ) -> tuple[int, Message, bool]:
    """For one running server that is not the target: (level, why not, measure). Level 0
    means stop it, with ``why`` saying why it was not put to sleep (empty when sleep is off
    for it); ``kept_so_far`` is what the sleepers kept beside it already hold."""
    key = c.model or ""
    level = facts.levels.get(key, 0)
    if not level:
        return 0, facts.refusals.get(key, Message("")), False
    if not c.can_sleep:
        return 0, _("its container was created without --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1 (by docker "
                    "compose, or before sleep was turned on)"), False
    if facts.total_gb is None or facts.need_gb is None:
        return 0, _("the GPU's memory cannot be read (NVML), so whether it fits beside the next model is unknown"), False
    kept = facts.kept_gb.get(key)
    if kept is not None and kept_so_far + kept + facts.need_gb > facts.total_gb:
        return 0, _("asleep it keeps {kept:.1f} GB on the GPU, and with the {need:.1f} GB the next model reserves "
                    "that does not fit in the card's {total:.1f} GB",
                    kept=kept_so_far + kept, need=facts.need_gb, total=facts.total_gb), False
    weights = facts.weights_gb.get(key, 0.0)
    if level == 1 and not asleep and (facts.ram_gb is None or facts.ram_gb < weights):
        return 0, _("sleep level 1 keeps its {weights:g} GB of weights in host RAM, but only {free:.1f} GB are "
                    "available (sleep level 2 needs no RAM for them)", weights=weights, free=facts.ram_gb or 0.0), False
    return level, Message(""), kept is None


def plan_switch(key: str, container_name: str, containers: list[ContainerInfo],
                asleep: frozenset[str] = frozenset(), facts: SleepFacts | None = None) -> SwitchPlan:
    """What must happen for ``key`` (served by ``container_name``) to be the one model awake.

    ``asleep``: ids of the running containers whose server sleeps; ``facts``: what the sleep
    decisions need (None: every other server is stopped). Sleepers are weighed first, then
    the awake servers, so what is already asleep keeps its place while it fits.
    Refuses when a container without the project's label holds the name: it is someone
    else's and is never touched."""
    for c in containers:
        if c.name == container_name and not c.managed:
            raise SwitchError(_(
                "A container named '{container}' exists without the project's label ({label}), so it was "
                "left alone; rename or remove it (docker rm -f {container}) or change container_name in "
                "config.yaml.", container=container_name, label=LABEL_MANAGED))
    managed = [c for c in containers if c.managed]
    target = next((c for c in managed if c.name == container_name), None)
    others = sorted((c for c in managed if c.running and c is not target), key=lambda c: c.id not in asleep)
    stop, sleep, why, kept_so_far = [], [], {}, 0.0
    for c in others:
        level, reason, measure = sleep_or_stop(c, c.id in asleep, facts, kept_so_far) if facts else (0, "", False)
        if level:
            kept_so_far += facts.kept_gb.get(c.model or "", 0.0)
            if c.id not in asleep:
                sleep.append(Sleep(c, level, measure))
            continue
        stop.append(c)
        if reason:
            why[c.id] = reason
    plan = SwitchPlan(stop=tuple(stop), sleep=tuple(sleep), why_stopped=why)
    if target is None:
        return plan
    if target.model == key and target.status == "running":
        if target.id in asleep:
            return replace(plan, wake=target)
        return replace(plan, reuse=target)
    if target.model == key and target.compose and not target.running:
        return replace(plan, start_existing=target)
    # A dead attempt, or a container of this name serving another model: make way for a fresh one.
    return replace(plan, stop=plan.stop + ((target,) if target.running else ()), remove=(target,))


def container_spec(key: str, model: ModelConfig, config: AppConfig, gpu_runtime: bool,
                   api_key: str | None = None, host_env: Mapping[str, str] | None = None) -> dict:
    """Keyword arguments for docker's ``containers.create`` for this model's vLLM server.
    ``api_key`` guards its /v1 routes; ``host_env`` gives the values of ``env_from_host``
    (names missing there are left out: a public model needs no HF_TOKEN)."""
    v = model.vllm
    assert v is not None
    volumes = {config.hf_cache_volume: {"bind": HF_CACHE_IN_CONTAINER, "mode": "rw"},
               config.vllm_cache_volume: {"bind": VLLM_CACHE_IN_CONTAINER, "mode": "rw"}}
    for mount in v.volumes:
        host, inside, *mode = mount.split(":")
        volumes[host] = {"bind": inside, "mode": mode[0] if mode else "rw"}
    environment = dict(v.env)
    environment.update({name: host_env[name] for name in v.env_from_host if host_env and name in host_env})
    if api_key:
        environment["VLLM_API_KEY"] = api_key
    command = v.command()
    if config.sleep_level(key):
        command.append(SLEEP_FLAG)
        environment[DEV_MODE_ENV] = "1"
    spec = dict(
        image=v.image, command=command, name=v.container_name, detach=True,
        labels={**v.labels, LABEL_MANAGED: "true", LABEL_MODEL: key},
        ports={f"{CONTAINER_PORT}/tcp": (v.host, v.port)},
        environment=environment, volumes=volumes, shm_size=v.shm_size,
    )
    if v.entrypoint:
        spec["entrypoint"] = v.entrypoint
    if v.gpu and gpu_runtime:
        from docker.types import DeviceRequest

        spec["device_requests"] = [DeviceRequest(count=1, capabilities=[["gpu"]])]
    return spec


def has_gpu_runtime(engine_info: dict) -> bool:
    """Whether the Docker engine can hand a GPU to a container (NVIDIA Container Toolkit)."""
    return "nvidia" in (engine_info.get("Runtimes") or {}) or engine_info.get("DefaultRuntime") == "nvidia"
