"""SingleContainerManager: the Docker side of vLLM mode.

Contract:
- ``switch(key)`` stops every other container of this project, makes sure the GPU memory
  came back, admits the model, pulls its image if missing, starts its container and
  returns once the container runs *and* ``GET /health`` is 200 *and* ``GET /v1/models``
  lists the served name. Polls every ``switching.poll_interval_s`` (≤ 0.5 s), no sleeps.
- A container that exits while starting fails the switch at once, with its exit code and
  its last 30 log lines; one that outlives ``start_timeout_s`` is stopped and removed. A
  half-started container is never left running.
- Only containers labelled ``io.chatvlmllm.managed=true`` are stopped or removed.
- Every Docker failure becomes one SwitchError/NotAvailable sentence; clean-up after a
  failure never replaces the original error. A cancel (``cancel`` event) stops and removes
  the half-started container, and ends an image pull at once, stalled or not
  (``managers.pulling``).
- Containers it creates get the API key (``managers.api_key``) as ``VLLM_API_KEY``; every
  readiness check sends it.
- It does not serialise callers: go through ``managers.arbiter.Arbiter``, which does.
- Sleep mode (``switching.sleep`` / ``vllm.sleep``): the other server is put to sleep instead
  of stopped where ``plan_switch`` says it fits — once none of its requests is in flight, then
  ``/sleep``, confirmed by ``/is_sleeping``, what it kept measured with NVML — and a sleeping
  target is woken instead of started. Strictly one step at a time: never a sleep while a wake
  runs (vllm#36753). A sleep or wake that fails is one sentence (an event); that server is
  stopped and the switch goes on the cold way. Requests still in flight when
  ``switching.pages_wait_timeout_s`` ends refuse the switch instead (StillBusy), as pages still
  read do in the arbiter: a stop would cut them too. One model is awake; sleepers run beside it.

The decisions (what to stop, what state a container is in, the create request) are pure
functions in ``managers.containers``; this class only carries them out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from managers import pulling
from managers.admission import admit, vllm_reservation_gb
from managers.api_key import api_key
from managers.containers import (
    LABEL_MANAGED, ContainerInfo, ModelStatus, SleepFacts, State,
    container_spec, derive_state, has_gpu_runtime, plan_switch,
)
from managers.docker_host import connect
from managers.gpu import GPUProbe, probe_gpus
from managers.readiness import api_ready
from managers.sleep import SleepEndpoints
from managers.host_memory import available_bytes
from managers.sleepers import Sleepers
from managers.start_times import StartTimes
from models.config import AppConfig, lock_dir
from models.errors import Cancelled, NotAvailable, StillBusy, SwitchError
from models.i18n import N_, Message, _, n_

LOG_TAIL = 30
# Why switching.sleep passes over a model published with expose: true (config.sleep_level).
EXPOSED = N_("it is published with expose: true, and vLLM's /sleep and /wake_up are not behind its API key")
log = logging.getLogger(__name__)


@contextlib.contextmanager
def docker_errors(doing: Message) -> Iterator[None]:
    """Any failure of the Docker engine while ``doing`` something, as one sentence."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        raise NotAvailable(_("The Docker engine stopped answering while {doing}; start Docker "
                             "(e.g. sudo systemctl start docker) and try again.", doing=doing)) from None
    except docker.errors.APIError as exc:
        raise SwitchError(_("Docker refused {doing}: {reason}.", doing=doing, reason=exc.explanation or exc)) from None
    except docker.errors.DockerException as exc:
        raise SwitchError(_("Docker failed while {doing}: {reason}.", doing=doing, reason=exc)) from None


@dataclass(frozen=True)
class SwitchEvent:
    stage: str  # waiting, stopping, sleeping, memory, pulling, starting, waking, ready
    message: Message
    elapsed: float
    log_line: str = ""
    estimate: float | None = None  # seconds this model took to start before (median)


OnEvent = Callable[[SwitchEvent], None]


@dataclass
class SwitchReport:
    """Where a switch spent its time; the benchmark reads it."""

    stop_s: float = 0.0
    memory_s: float = 0.0
    pull_s: float = 0.0
    start_s: float = 0.0  # create and start calls, or the wake calls
    ready_s: float = 0.0  # then until the API answers
    total_s: float = 0.0
    stopped: list[str] = field(default_factory=list)  # model keys
    slept: list[str] = field(default_factory=list)
    woke: bool = False
    # Why a server was stopped although sleep is on for it (model key → one sentence).
    why_stopped: dict[str, Message] = field(default_factory=dict)
    container_id: str = ""


class SingleContainerManager:
    def __init__(self, config: AppConfig, client=None, gpu_probe: Callable[[], GPUProbe] = probe_gpus,
                 directory: Path | None = None):
        self.config = config
        self._client = client
        self.gpu_probe = gpu_probe
        self.dir = directory or lock_dir(config)
        self.history = StartTimes(self.dir)
        self.sleepers = Sleepers(self.dir)
        self.last_report = SwitchReport()

    @property
    def api_key(self) -> str:
        return api_key(self.dir)

    @property
    def client(self):
        if self._client is None:
            self._client = connect()
        return self._client

    # --- reading ------------------------------------------------------------------------

    def _managed(self) -> list:
        return self.client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"})

    def _named(self, name: str) -> list:
        # Docker's name filter matches substrings; keep the exact name only.
        return [c for c in self.client.containers.list(all=True, filters={"name": name})
                if c.name == name]

    def _vllm(self, key: str):
        model = self.config.model(key)
        if model.vllm is None:
            raise NotAvailable(_("{model} has no vLLM backend in config.yaml.", model=model.name))
        if model.vllm.remote:
            raise NotAvailable(_("{model} is served by the remote endpoint {endpoint}; no container is "
                                 "managed for it.", model=model.name, endpoint=model.vllm.endpoint))
        return model, model.vllm

    def base_url(self, key: str) -> str:
        return self._vllm(key)[1].base_url

    def status(self) -> dict[str, ModelStatus]:
        with docker_errors(_("reading the model containers")):
            return self._status()

    def _endpoints(self, key: str) -> SleepEndpoints:
        return SleepEndpoints(self.base_url(key), self._vllm(key)[1].container_name, self.api_key,
                              timeout=self.config.switching.stop_timeout_s)

    def _asleep(self, info: ContainerInfo) -> bool:
        """Whether this running container's server sleeps (False when it cannot or does not say)."""
        if not (info.running and info.can_sleep and info.model in self.config.models):
            return False
        try:
            return self._endpoints(info.model).is_sleeping()
        except (SwitchError, NotAvailable):
            return False

    def _status(self) -> dict[str, ModelStatus]:
        by_model = {}
        for c in self._managed():
            info = ContainerInfo.from_attrs(c.attrs)
            if info.model:
                by_model[info.model] = info
        result = {}
        for key, model in self.config.models.items():
            if model.vllm is None or model.vllm.remote:
                continue
            info = by_model.get(key)
            asleep = bool(info and self._asleep(info))
            ready = bool(info and info.status == "running" and not asleep
                         and api_ready(self.base_url(key), model.vllm.served_model_name,
                                       api_key=self.api_key)[0])
            state = derive_state(info, ready, asleep)
            detail = Message("")
            if state is State.FAILED and info and info.oom_killed:
                detail = _("exited with code {code} (out of memory)", code=str(info.exit_code))
            elif state is State.FAILED and info:
                detail = _("exited with code {code}", code=str(info.exit_code))
            elif state is State.ASLEEP:
                woke = self.history.last(key, "wake")
                level = str(self.sleepers.level(key) or "?")
                detail = (_("sleep level {level}; it woke in {seconds:.1f} s last time", level=level,
                            seconds=woke.total) if woke else _("sleep level {level}; not woken yet", level=level))
            elif self.config.switching.sleep and model.vllm.expose:
                detail = _("stopped, never put to sleep, on a switch: {reason}", reason=Message(EXPOSED))
            since = (info.started_at if info and info.running else info.finished_at if info else None) or None
            result[key] = ModelStatus(key, state, model.vllm.port if info and info.running else None,
                                      since, info.name if info else None, detail)
        return result

    def active(self) -> str | None:
        """The model whose container is running (ready or still starting) and awake, if any:
        sleepers run beside it."""
        with docker_errors(_("reading the model containers")):
            for c in self._managed():
                info = ContainerInfo.from_attrs(c.attrs)
                if info.running and not self._asleep(info):
                    return info.model
        return None

    def logs(self, key: str, tail: int = 100) -> str:
        v = self._vllm(key)[1]
        with docker_errors(_("reading the log of {container}", container=v.container_name)):
            found = self._named(v.container_name)
            if not found or not ContainerInfo.from_attrs(found[0].attrs).managed:
                raise NotAvailable(_("No container of {model} exists (it is stopped and removed).", model=key))
            return found[0].logs(tail=tail).decode(errors="replace")

    # --- acting -------------------------------------------------------------------------

    def switch(self, key: str, on_event: OnEvent | None = None,
               cancel: threading.Event | None = None) -> ModelStatus:
        v = self._vllm(key)[1]
        with docker_errors(_("starting {container}", container=v.container_name)):
            return self._switch(key, on_event, cancel or threading.Event())

    def _switch(self, key: str, on_event: OnEvent | None, cancel: threading.Event) -> ModelStatus:
        import docker.errors

        model, v = self._vllm(key)
        started = time.monotonic()
        report = self.last_report = SwitchReport()
        estimate = None  # the median of this kind of switch, once the plan says which kind

        def emit(stage: str, message: Message, log_line: str = "") -> None:
            if on_event:
                on_event(SwitchEvent(stage, message, time.monotonic() - started, log_line, estimate))

        containers = {c.id: c for c in self._managed() + self._named(v.container_name)}
        infos = [ContainerInfo.from_attrs(c.attrs) for c in containers.values()]
        asleep = frozenset(i.id for i in infos if self._asleep(i))
        plan = plan_switch(key, v.container_name, infos, asleep, self._sleep_facts(key, infos))
        estimate = self.history.estimate(key, "wake" if plan.wake is not None else "cold")
        mark = time.monotonic()
        for info in plan.stop:
            if info.id in plan.why_stopped:
                said = _("{model} was stopped rather than put to sleep: {reason}.", model=self._name(info),
                         reason=plan.why_stopped[info.id])
                report.why_stopped[info.model or info.name] = said
                emit("stopping", said)
            emit("stopping", _("stopping {model}", model=info.model or info.name))
            self._stop(containers[info.id])
            report.stopped.append(info.model or info.name)
        for step in plan.sleep:  # one at a time, and all before the target wakes or starts
            self._sleep_or_stop(containers[step.info.id], step, model, emit, cancel, report)
        for info in plan.remove:
            if info not in plan.stop:  # stopped ones were removed already
                self._remove(containers[info.id], force=True)
        report.stop_s = time.monotonic() - mark

        if plan.wake is not None:
            woken = self._wake(containers[plan.wake.id], key, emit, cancel, report)
            if woken is not None:
                return woken
            # It was stopped: start it the cold way (docker compose's stays, to be started as is).
            target = plan.wake
            plan = replace(plan, wake=None, start_existing=target if target.compose else None)
            estimate = self.history.estimate(key, "cold")

        if plan.reuse is None:
            mark = time.monotonic()
            if v.gpu or self.config.sleep_level(key):  # sleep mode is CUDA-only: its memory is NVML's
                free_gb, total_gb = self._wait_for_gpu_memory(model, emit, cancel)
                for warning in admit(model, self.config, free_gb, total_gb):
                    emit("memory", warning)
            report.memory_s = time.monotonic() - mark
            if not v.loopback:
                emit("starting", _("{container} is published on {host}:{port} (expose: true): other machines "
                                   "can reach it; only the API key keeps them out",
                                   container=v.container_name, host=v.host, port=str(v.port)))
            mark = time.monotonic()
            self._ensure_image(v.image, emit, cancel)
            report.pull_s = time.monotonic() - mark

        mark = time.monotonic()
        if cancel.is_set():
            raise Cancelled(_("The start of {container} was cancelled before it began.", container=v.container_name))
        if plan.reuse:
            container = containers[plan.reuse.id]
        elif plan.start_existing:
            container = containers[plan.start_existing.id]
            emit("starting", _("starting {container} (created by docker compose)", container=v.container_name))
            if _env(container).get("VLLM_API_KEY") != self.api_key:
                emit("starting", _("{container} was created by docker compose without this app's API key: its "
                                   "/v1 is not guarded by it — export VLLM_API_KEY as docker-compose.yml says",
                                   container=v.container_name))
            container.start()
        else:
            emit("starting", _("starting {container}", container=v.container_name))
            gpu_runtime = v.gpu and has_gpu_runtime(self.client.info())
            if v.gpu and not gpu_runtime:
                raise NotAvailable(_("{model} requests a GPU but the Docker engine has no NVIDIA runtime — "
                                     "install the NVIDIA Container Toolkit and restart Docker.", model=model.name))
            container = self.client.containers.create(**container_spec(
                key, model, self.config, gpu_runtime, self.api_key, os.environ))
            try:
                container.start()
            except docker.errors.APIError as exc:  # e.g. the port is taken by another program
                self._quietly(self._remove, container, force=True)
                raise SwitchError(_("{container} could not start: {reason}.",
                                    container=v.container_name, reason=exc.explanation or exc)) from None
            except BaseException:  # the engine timed out, or we were interrupted: leave nothing
                self._quietly(self._abandon, container)
                raise
        report.container_id = container.id
        report.start_s = time.monotonic() - mark
        mark = time.monotonic()
        # A server that was already running is not ours to stop when a join gives up.
        self._wait_ready(container, key, emit, cancel, abandon=plan.reuse is None)
        report.ready_s = time.monotonic() - mark
        report.total_s = time.monotonic() - started
        if plan.create or plan.start_existing:
            self.history.record(key, "cold", {"stop": report.stop_s, "memory": report.memory_s,
                                              "pull": report.pull_s, "start": report.start_s,
                                              "ready": report.ready_s})
        return self._ready(key, container, emit)

    def _ready(self, key: str, container, emit) -> ModelStatus:
        """The end of a switch, cold or woken: the target's server answers."""
        model, v = self._vllm(key)
        emit("ready", _("{model} is ready on port {port}", model=model.name, port=str(v.port)))
        return ModelStatus(key, State.READY, v.port, ContainerInfo.from_attrs(container.attrs).started_at,
                           v.container_name)

    def _name(self, info: ContainerInfo) -> str:
        return self.config.models[info.model].name if info.model in self.config.models else (info.model or info.name)

    # --- sleep mode -----------------------------------------------------------------------

    def _sleep_facts(self, key: str, infos: list[ContainerInfo]) -> SleepFacts | None:
        """What plan_switch weighs, read only when some other running server might sleep."""
        others = {i.model for i in infos if i.running and i.managed and i.model in self.config.models
                  and i.model != key}
        levels = {k: self.config.sleep_level(k) for k in others}
        refusals = {k: Message(EXPOSED) for k in others if self.config.switching.sleep and not levels[k]
                    and self.config.models[k].vllm.expose}
        if not any(levels.values()):
            return SleepFacts(levels=levels, refusals=refusals)
        probe = self.gpu_probe()
        target = self.config.model(key)
        return SleepFacts(
            levels=levels, refusals=refusals, kept_gb=self.sleepers.kept_gb(),
            weights_gb={k: self.config.models[k].vram_gb for k in others},
            need_gb=vllm_reservation_gb(target, probe.total_gb) if probe.total_gb is not None else None,
            total_gb=probe.total_gb, ram_gb=_gb(available_bytes()))

    def _sleep_or_stop(self, container, step, target, emit, cancel: threading.Event, report: SwitchReport) -> None:
        """Put one server to sleep; when that fails, or the target turns out not to fit beside
        it, say why in one sentence and stop it."""
        name = self._name(step.info)
        try:
            reason = self._put_to_sleep(step.info.model, name, step.level, step.measure, target, emit, cancel)
            said = reason and _("{model} was stopped rather than put to sleep: {reason}.", model=name, reason=reason)
        except StillBusy:
            raise
        except SwitchError as exc:
            said = _("{model} could not be put to sleep, so it was stopped: {error}", model=name, error=exc.message)
        key = step.info.model or step.info.name
        if not said:
            report.slept.append(key)
            return
        report.why_stopped[key] = said
        emit("stopping", said)
        self._stop(container)
        report.stopped.append(key)

    def _put_to_sleep(self, key: str, name: str, level: int, measure: bool, target, emit,
                      cancel: threading.Event) -> Message | None:
        """Wait until none of its requests is in flight, sleep, confirm, measure what it kept.
        Returns why it must be stopped after all (the target does not fit), or None."""
        endpoints = self._endpoints(key)
        poll = self.config.switching.poll_interval_s
        timeout = self.config.switching.pages_wait_timeout_s
        deadline = time.monotonic() + timeout
        while (busy := endpoints.in_flight()) > 0:
            if time.monotonic() >= deadline:
                raise StillBusy(n_("{model} still had {n} request in flight after {seconds:g} s "
                                   "(switching.pages_wait_timeout_s), so it was left running; switch again "
                                   "when it finishes.",
                                   "{model} still had {n} requests in flight after {seconds:g} s "
                                   "(switching.pages_wait_timeout_s), so it was left running; switch again "
                                   "when they finish.", busy, model=name, seconds=timeout))
            if cancel.is_set():
                raise Cancelled(_("The change was cancelled while {model} finished its requests.", model=name))
            emit("sleeping", n_("waiting for {n} request in flight on {model}",
                                "waiting for {n} requests in flight on {model}", busy, model=name))
            time.sleep(poll)
        before = self.gpu_probe()
        # The level is written first: were this process to die mid-sleep, a wake with level 1's
        # one call after a level-2 sleep would skip reloading the weights it dropped.
        self.sleepers.record(key, level, None)
        emit("sleeping", _("putting {model} to sleep (level {level})", model=name, level=str(level)))
        endpoints.sleep(level)
        deadline = time.monotonic() + self.config.switching.stop_timeout_s
        while not endpoints.is_sleeping():
            if time.monotonic() >= deadline:
                raise SwitchError(_("{model} did not report sleeping {seconds:g} s after /sleep.",
                                    model=name, seconds=self.config.switching.stop_timeout_s))
            time.sleep(poll)
        after = self.gpu_probe()
        kept = None
        if before.free_gb is not None and after.free_gb is not None and after.total_gb is not None:
            held = vllm_reservation_gb(self.config.models[key], after.total_gb)
            kept = held - (after.free_gb - before.free_gb)
        self.sleepers.record(key, level, kept)
        if measure and after.free_gb is not None and after.total_gb is not None:
            need = vllm_reservation_gb(target, after.total_gb)
            if after.free_gb < need:
                return _("asleep it keeps {kept:.1f} GB on the GPU, and the {need:.1f} GB the next model reserves "
                         "do not fit in the {free:.1f} GB left free", kept=kept or 0.0, need=need, free=after.free_gb)
        return None

    def _wake(self, container, key: str, emit, cancel: threading.Event, report: SwitchReport) -> ModelStatus | None:
        """Wake the target's sleeping server and wait until it answers; None when that failed
        (it was stopped, with one sentence saying why)."""
        model, v = self._vllm(key)
        level = self.sleepers.level(key) or 2  # unknown: level 2's sequence is right for both levels
        mark = time.monotonic()
        try:
            if v.gpu or self.config.sleep_level(key):
                self._wait_for_gpu_memory(model, emit, cancel, kept=self.sleepers.kept_gb().get(key, 0.0))
            report.memory_s = time.monotonic() - mark
            mark = time.monotonic()
            emit("waking", _("waking {model} (sleep level {level})", model=model.name, level=str(level)))
            endpoints = self._endpoints(key)
            endpoints.wake(level)
            report.start_s = time.monotonic() - mark
            mark = time.monotonic()
            deadline = time.monotonic() + v.start_timeout_s
            while endpoints.is_sleeping():
                if time.monotonic() >= deadline:
                    raise SwitchError(_("{model} still reported sleeping {seconds:g} s after it was woken.",
                                        model=model.name, seconds=v.start_timeout_s))
                cancel.wait(self.config.switching.poll_interval_s)
            self._wait_ready(container, key, emit, cancel, abandon=False)
        except SwitchError as exc:
            emit("stopping", _("{model} could not be woken, so it was stopped and starts the cold way: {error}",
                               model=model.name, error=exc.message))
            self._stop(container)
            return None
        report.ready_s = time.monotonic() - mark
        report.woke = True
        report.container_id = container.id
        report.total_s = report.stop_s + report.memory_s + report.start_s + report.ready_s
        self.history.record(key, "wake", {"stop": report.stop_s, "memory": report.memory_s,
                                          "start": report.start_s, "ready": report.ready_s})
        return self._ready(key, container, emit)

    def stop_all(self, on_event: OnEvent | None = None) -> list[str]:
        """Stop every running container of this project; nothing to stop is not an error."""
        stopped = []
        started = time.monotonic()
        with docker_errors(_("stopping the model containers")):
            for c in self._managed():
                info = ContainerInfo.from_attrs(c.attrs)
                if info.running:
                    if on_event:
                        on_event(SwitchEvent("stopping", _("stopping {model}", model=info.model or info.name),
                                             time.monotonic() - started))
                    self._stop(c)
                    stopped.append(info.model or info.name)
        return stopped

    # --- steps ----------------------------------------------------------------------------

    def _stop(self, container) -> None:
        """Graceful stop (SIGTERM, SIGKILL after stop_timeout_s), then remove it unless
        docker compose created it, and confirm it no longer runs."""
        import docker.errors

        info = ContainerInfo.from_attrs(container.attrs)
        try:
            container.stop(timeout=int(self.config.switching.stop_timeout_s))
            if not info.compose:
                self._remove(container)
            else:
                container.reload()
                if ContainerInfo.from_attrs(container.attrs).running:
                    raise SwitchError(_("{container} is still running after docker stop.", container=info.name))
        except docker.errors.NotFound:
            pass  # gone already: that is what we wanted

    def _remove(self, container, force: bool = False) -> None:
        import docker.errors

        try:
            container.remove(force=force)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise

    def _wait_for_gpu_memory(self, model, emit, cancel: threading.Event | None = None, kept: float = 0.0
                             ) -> tuple[float | None, float | None]:
        """Poll NVML until what vLLM will reserve is free again (less ``kept``, what a sleeping
        server still holds), bounded by gpu_memory_wait_s; returns the free and total GB last
        read (None where NVML cannot be read)."""
        deadline = time.monotonic() + self.config.switching.gpu_memory_wait_s
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(_("The start of {model} was cancelled while GPU memory came back.", model=model.name))
            probe = self.gpu_probe()
            if probe.free_gb is None:
                return None, None
            need = vllm_reservation_gb(model, probe.total_gb) - kept
            if probe.free_gb >= need or time.monotonic() >= deadline:
                return probe.free_gb, probe.total_gb
            emit("memory", _("waiting for GPU memory: {free:.1f} GB free, {need:.1f} GB needed",
                             free=probe.free_gb, need=need))
            time.sleep(0.5)

    def _ensure_image(self, image: str, emit, cancel: threading.Event) -> None:
        import docker.errors

        try:
            self.client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        root = self.client.info().get("DockerRootDir", "/var/lib/docker")
        try:
            free_gb = shutil.disk_usage(root).free / 1e9
        except OSError:
            free_gb = None  # a remote engine: its disk cannot be read from here
        need = self.config.switching.min_free_disk_gb
        if free_gb is not None and free_gb < need:
            raise NotAvailable(_("Only {free:.0f} GB are free under {root}; pulling {image} needs about "
                                 "{need:g} GB (switching.min_free_disk_gb) — free disk space first.",
                                 free=free_gb, root=root, image=image, need=need))
        repo, _colon, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        emit("pulling", _("pulling {image}", image=image))
        with contextlib.closing(pulling.pull(repo, tag, cancel, self.config.switching.poll_interval_s)) as events:
            for event in events:
                if pulling.REFUSED in event:
                    raise SwitchError(_("Could not pull {image} ({reason}); check the network, or pull it by hand: "
                                        "docker pull {image}.", image=image, reason=event[pulling.REFUSED]))
                if "error" in event:
                    raise SwitchError(_("Could not pull {image}: {reason}.", image=image, reason=event["error"]))
                # Docker's own progress text (status, bar) is English; only the frame is ours.
                progress = f"{event.get('status', '')} {event.get('progress', '')}".strip()
                emit("pulling", _("pulling {image}: {progress}", image=image, progress=progress))
        if cancel.is_set():
            raise Cancelled(_("The pull of {image} was cancelled; what was downloaded is kept.", image=image))

    def _wait_ready(self, container, key: str, emit, cancel: threading.Event, abandon: bool = True) -> None:
        import docker.errors

        v = self._vllm(key)[1]
        url = self.base_url(key)
        poll = self.config.switching.poll_interval_s
        deadline = time.monotonic() + v.start_timeout_s
        ready = False
        try:
            while True:
                if cancel.is_set():
                    raise Cancelled(_("The start of {container} was cancelled; it was stopped.",
                                      container=v.container_name))
                try:
                    container.reload()
                except docker.errors.NotFound:
                    raise SwitchError(_("{container} disappeared while starting (removed by someone else?).",
                                        container=v.container_name)) from None
                info = ContainerInfo.from_attrs(container.attrs)
                if info.status in ("exited", "dead"):
                    tail = _log_tail(container, LOG_TAIL)
                    last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
                    raise SwitchError(_("{container} exited with code {code} while starting: {line}",
                                        container=v.container_name, code=str(info.exit_code),
                                        line=last.strip()[:200]), tail)
                ready, why = api_ready(url, v.served_model_name, timeout=min(2.0, poll * 4),
                                       api_key=self.api_key)
                if ready:
                    return
                if time.monotonic() >= deadline:
                    tail = _log_tail(container, LOG_TAIL)
                    raise SwitchError(_("{container} was not ready after {seconds:g} s ({reason}); it was stopped.",
                                        container=v.container_name, seconds=v.start_timeout_s, reason=why), tail)
                newest = _log_tail(container, 1).strip()
                emit("starting", _("starting {container}: {reason}", container=v.container_name, reason=why), newest)
                cancel.wait(poll)
        finally:
            if not ready and abandon:
                self._quietly(self._abandon, container)

    def _abandon(self, container) -> None:
        """Never leave a half-started container running; an exited one stays for its logs
        and is removed by the next switch."""
        import docker.errors

        try:
            container.reload()
            info = ContainerInfo.from_attrs(container.attrs)
            if info.running:
                container.stop(timeout=int(self.config.switching.stop_timeout_s))
                if not info.compose:  # docker compose's containers are stopped, never removed
                    container.remove()
        except docker.errors.NotFound:
            pass

    @staticmethod
    def _quietly(step, *args, **kwargs) -> None:
        """Clean-up after a failure: its own failure is logged, never raised over the first."""
        try:
            step(*args, **kwargs)
        except Exception:
            log.debug("clean-up after a failed start failed too", exc_info=True)



def _env(container) -> dict[str, str]:
    """The container's environment, from its inspect document."""
    pairs = (container.attrs.get("Config") or {}).get("Env") or []
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _log_tail(container, lines: int) -> str:
    """The container's last log lines; empty when Docker has none to give (being removed)."""
    import docker.errors

    try:
        return container.logs(tail=lines).decode(errors="replace")
    except docker.errors.APIError:
        return ""


def _gb(size: int | None) -> float | None:
    return None if size is None else size / 1e9
