"""Model containers as data, and the pure decisions about them.

Nothing here talks to Docker: ``plan_switch`` decides what must stop, be removed or be
started for a model to become active; ``derive_state`` names a container's state;
``container_spec`` is the exact create request. SingleContainerManager carries them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused")

    @classmethod
    def from_attrs(cls, attrs: dict) -> ContainerInfo:
        """From the Docker API's container inspect (or list) document."""
        labels = attrs.get("Config", {}).get("Labels") or attrs.get("Labels") or {}
        state = attrs.get("State") or {}
        name = attrs.get("Name") or (attrs.get("Names") or [""])[0]
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
        )


@dataclass(frozen=True)
class ModelStatus:
    key: str
    state: State
    port: int | None = None
    since: str | None = None
    container: str | None = None
    detail: Message = Message("")


def derive_state(info: ContainerInfo | None, api_ready: bool) -> State:
    if info is None:
        return State.STOPPED
    if info.status == "removing":
        return State.STOPPING
    if info.status in ("running", "restarting", "created"):
        return State.READY if api_ready and info.status == "running" else State.STARTING
    if info.status == "paused":
        return State.FAILED
    # exited or dead: 0 and SIGTERM's 143 are stops; anything else (137 from the OOM
    # killer, a Python traceback's 1, argparse's 2) is a failure worth showing.
    return State.STOPPED if info.exit_code in (0, 143) and not info.oom_killed else State.FAILED


@dataclass(frozen=True)
class SwitchPlan:
    stop: tuple[ContainerInfo, ...] = ()
    remove: tuple[ContainerInfo, ...] = ()
    reuse: ContainerInfo | None = None  # already running: only wait until it is ready
    start_existing: ContainerInfo | None = None  # created by docker compose: start it as is

    @property
    def create(self) -> bool:
        return self.reuse is None and self.start_existing is None


def plan_switch(key: str, container_name: str, containers: list[ContainerInfo]) -> SwitchPlan:
    """What must happen for ``key`` (served by ``container_name``) to be the one model running.

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
    stop = tuple(c for c in managed if c.running and c is not target)
    if target is None:
        return SwitchPlan(stop=stop)
    if target.model == key and target.status == "running":
        return SwitchPlan(stop=stop, reuse=target)
    if target.model == key and target.compose and not target.running:
        return SwitchPlan(stop=stop, start_existing=target)
    # A dead attempt, or a container of this name serving another model: make way for a fresh one.
    return SwitchPlan(stop=stop + ((target,) if target.running else ()), remove=(target,))


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
    spec = dict(
        image=v.image, command=v.command(), name=v.container_name, detach=True,
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
