"""The sidebar: mode and model, the active model with Switch/Stop or Load/Unload, and the
operations running in this process with their Cancel."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from managers import runs
from managers.availability import default_choice, models_for_mode, vram_warning, why_not
from managers.container_manager import SingleContainerManager
from managers.containers import State
from managers.expect import asleep_note, duration, expect
from managers.idle import idle_deadline
from managers.operations import Operation
from managers.runtime import Runtime
from managers.start_times import StartTimes
from models.config import MODES, AppConfig, lock_dir
from models.errors import ChatVLMError
from models.i18n import LANGUAGES, N_
from views.cached import cached_remote_ready
from views.i18n import (LANGUAGE_KEY, LANGUAGE_LABEL, NAMES, default_language, local, mode_name,
                        said, shown_as, t, tr)


def language_picker(config: AppConfig | None) -> str:
    """The language of this session, chosen first, at the top of the sidebar, so everything
    after it is drawn in it; its default is the config's ``ui.language`` (auto: the browser's)."""
    ui = getattr(config, "ui", None)
    setting = getattr(ui, "language", None) or "auto"
    default = default_language(setting)
    return st.sidebar.selectbox(LANGUAGE_LABEL, LANGUAGES, index=LANGUAGES.index(default),
                                format_func=NAMES.get, key=LANGUAGE_KEY)


def sidebar(runtime: Runtime, host) -> tuple[str, str, str | None]:
    config = runtime.config
    st.sidebar.title(t("📄 ChatVLMLLM"))
    default_mode, default_key = default_choice(config, host)
    mode = st.sidebar.radio(t("Mode"), MODES, index=MODES.index(default_mode),
                            format_func=shown_as(MODES, mode_name), horizontal=True, key="mode")
    keys = models_for_mode(config, mode)
    reasons = {k: why_not(config.models[k], mode, host, config) for k in keys}
    # The app's default where this mode has it, else something that runs, else the configured default.
    ranked = [default_key] + [k for k in keys if reasons[k] is None] + [config.default_model] + keys
    preferred = next(k for k in ranked if k in keys)

    def label(k: str) -> str:
        m = config.models[k]
        where = t("remote") if mode == "vllm" and m.vllm.remote else (
            t("{gb:g} GB VRAM", gb=m.vram_gb) if m.vram_gb else t("no GPU"))
        return f"{'✅' if reasons[k] is None else '⛔'} {local(m.name)} · {where}"

    key = st.sidebar.selectbox(t("Model"), keys, index=keys.index(preferred),
                               format_func=shown_as(keys, label), key=f"model_{mode}")
    model = config.models[key]
    reason = reasons[key]
    if model.description:
        st.sidebar.caption(local(model.description))
    if reason:
        st.sidebar.warning(said(t("Cannot run here: {reason}.", reason=tr(reason))))
    elif warning := vram_warning(model, config):
        st.sidebar.info(said(warning) + ".")

    st.sidebar.divider()
    if mode == "vllm" and model.vllm.remote:
        ok, why = cached_remote_ready(key, config)
        st.sidebar.markdown(t("**Remote endpoint:** {endpoint}", endpoint=model.vllm.endpoint))
        st.sidebar.caption(t("answering") if ok else said(t("not answering: {reason}", reason=tr(why))))
    elif mode == "vllm":
        vllm_controls(runtime, key, reason)
    elif mode == "local":
        local_controls(runtime, key, reason, host)
    elif mode == "cpu" and not reason:
        st.sidebar.markdown(t("**Active model:** {name}", name=local(model.name)))
    else:
        st.sidebar.markdown(t("**Active model:** none"))
    st.sidebar.caption(said(host.docker_error) if host.docker_error else t("Docker engine: reachable"))
    gpu = host.gpu
    gpus = ", ".join(t("{name} ({free:.1f} of {total:.1f} GB free)", name=g.name, free=g.free_gb, total=g.total_gb)
                     for g in gpu.gpus)
    st.sidebar.caption(said(t("GPU: {gpus}", gpus=gpus or tr(gpu.error))))
    return mode, key, reason


def vllm_controls(runtime: Runtime, key: str, cannot_start: str | None) -> None:
    """Active container, its port and age, Switch and Stop; they run as process operations."""
    config = runtime.config
    try:
        statuses = SingleContainerManager(config).status()
    except ChatVLMError as exc:
        st.sidebar.markdown(t("**Active model:** none"))
        st.sidebar.caption(said(exc))
        return
    active = next((s for s in statuses.values() if s.state in (State.READY, State.STARTING)), None)
    if active:
        name = local(config.models[active.key].name)
        st.sidebar.markdown(t("**Active model:** {name} (ready)", name=name) if active.state is State.READY
                            else t("**Active model:** {name} (starting)", name=name))
        st.sidebar.caption(t("port {port} · since {since}", port=str(active.port), since=active.since or "-"))
    else:
        st.sidebar.markdown(t("**Active model:** none"))
    for failed in (s for s in statuses.values() if s.state is State.FAILED):
        st.sidebar.caption(said(t("⚠ {name} failed: {reason}", name=local(config.models[failed.key].name),
                                  reason=tr(failed.detail))))
    left, right = st.sidebar.columns(2)
    already = active is not None and active.key == key and active.state is State.READY
    busy = bool(runtime.operations.running())
    if left.button(t("Switch") if active else t("Start"), disabled=bool(cannot_start) or already or busy,
                   key="vllm_switch", type="primary"):
        watch(runs.switch(runtime, key))
    if right.button(t("Stop"), disabled=active is None or busy, key="vllm_stop"):
        watch(runs.stop(runtime))
    times = StartTimes(lock_dir(config))
    if not cannot_start and not already:
        state = statuses[key].state if key in statuses else None
        st.sidebar.caption(said(expect(config, times, key, "vllm", state=state).message))
    sleeping = [asleep_note(local(config.models[s.key].name), times.last(s.key, "wake"))
                for s in statuses.values() if s.state is State.ASLEEP]
    if sleeping:
        st.sidebar.caption(said("; ".join(tr(note) for note in sleeping)))


def local_controls(runtime: Runtime, key: str, cannot_load: str | None, host) -> None:
    """The model loaded in this process, Load and Unload; they run as process operations."""
    current = runtime.loader.current()
    if current:
        st.sidebar.markdown(t("**Active model:** {name} (local, {device})", name=local(current.model.name),
                              device=current.device))
        st.sidebar.caption(t("loaded in {seconds:.1f} s · {gb:.2f} GB", seconds=current.load_seconds,
                             gb=current.memory_bytes / 1e9))
    else:
        st.sidebar.markdown(t("**Active model:** none"))
    left, right = st.sidebar.columns(2)
    loaded = current is not None and current.key == key
    busy = bool(runtime.operations.running())
    if left.button(t("Load"), disabled=bool(cannot_load) or loaded or busy, key="local_load", type="primary"):
        watch(runs.load(runtime, key))
    if right.button(t("Unload"), disabled=current is None or busy, key="local_unload"):
        watch(runs.unload(runtime))
    if not cannot_load and not loaded:
        expected = expect(runtime.config, StartTimes(lock_dir(runtime.config)), key, "local",
                          kept=runtime.loader.kept(), device=host.local_device)
        st.sidebar.caption(said(expected.message))


def watch(op: Operation) -> None:
    """This session follows ``op``: its progress now, its outcome once it ends."""
    st.session_state["watched_op"] = op.id
    st.session_state["redraw"] = True  # the sidebar was drawn before it began


def idle_note(runtime: Runtime) -> None:
    deadline = idle_deadline(runtime)
    if deadline is not None:
        minutes = runtime.config.switching.idle_unload_s / 60
        st.sidebar.caption(t("Unloads after {minutes:g} min without use (at {time} if unused).",
                             minutes=minutes, time=datetime.fromtimestamp(deadline).strftime("%H:%M")))


def describe(op: Operation, config: AppConfig) -> str:
    name = local(config.models[op.key].name) if op.key in config.models else None
    event = op.last_event
    if event is None:
        if op.kind == "switch":
            return t("Switching to {name}…", name=name) if name else t("Switching to the active model…")
        if op.kind == "load":
            return t("Loading {name}…", name=name) if name else t("Loading the active model…")
        if op.kind == "stop":
            return t("Stopping {name}…", name=name) if name else t("Stopping the active model…")
        return t("Unloading {name}…", name=name) if name else t("Unloading the active model…")
    if event.estimate:
        return t("{message} · {elapsed:.0f} s (usually {time})", message=tr(event.message),
                 elapsed=event.elapsed, time=duration(event.estimate))
    return t("{message} · {elapsed:.0f} s", message=tr(event.message), elapsed=event.elapsed)


CANCEL = {"switch": N_("Cancel switch"), "load": N_("Cancel load"), "stop": N_("Cancel stop"),
          "unload": N_("Cancel unload")}


def operations_panel(runtime: Runtime):
    """Every operation running in this process, with its own Cancel; the outcome of the one
    this session started. Returns the slot that ``follow`` keeps up to date."""
    operations = runtime.operations
    for op in operations.running():
        if st.sidebar.button(t(CANCEL[op.kind]), key=f"cancel_op_{op.id}"):
            op.cancel.set()
    slot = st.sidebar.empty()
    watched = operations.get(st.session_state.get("watched_op", -1))
    if watched and not watched.running and watched.error:
        st.sidebar.error(said(watched.error))
        if watched.log_tail:
            with st.sidebar.expander(t("Container log")):
                st.code(watched.log_tail, language=None)
    elif watched and watched.state == "done" and watched.kind == "unload" and watched.result:
        st.sidebar.caption(said(t("Unloaded: {name}.", name=tr(watched.result))))
    return slot


def draw_operations(slot, runtime: Runtime) -> None:
    running = runtime.operations.running()
    with slot.container():
        for op in running:
            st.info(said(describe(op, runtime.config)))
            if op.last_event and op.last_event.log_line:
                st.caption(said(op.last_event.log_line[-200:]))  # a container's own words
