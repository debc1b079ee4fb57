"""The sidebar: mode and model, the active model with Switch/Stop or Load/Unload, and the
operations running in this process with their Cancel."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from managers import runs
from managers.availability import default_choice, models_for_mode, vram_warning, why_not
from managers.container_manager import SingleContainerManager
from managers.containers import State
from managers.idle import idle_deadline
from managers.model_loader import ModelLoader
from managers.operations import OPERATIONS, Operation
from models.config import MODE_LABELS, MODES, AppConfig
from models.errors import ChatVLMError
from views.cached import cached_remote_ready


def sidebar(config: AppConfig, host) -> tuple[str, str, str | None]:
    st.sidebar.title("📄 ChatVLMLLM")
    default_mode, default_key = default_choice(config, host)
    mode = st.sidebar.radio("Mode", MODES, index=MODES.index(default_mode),
                            format_func=MODE_LABELS.get, horizontal=True, key="mode")
    keys = models_for_mode(config, mode)
    reasons = {k: why_not(config.models[k], mode, host, config) for k in keys}
    # The app's default where this mode has it, else something that runs, else the configured default.
    ranked = [default_key] + [k for k in keys if reasons[k] is None] + [config.default_model] + keys
    preferred = next(k for k in ranked if k in keys)

    def label(k: str) -> str:
        m = config.models[k]
        where = "remote" if mode == "vllm" and m.vllm.remote else (
            f"{m.vram_gb:g} GB VRAM" if m.vram_gb else "no GPU")
        return f"{'✅' if reasons[k] is None else '⛔'} {m.name} · {where}"

    key = st.sidebar.selectbox("Model", keys, index=keys.index(preferred),
                               format_func=label, key=f"model_{mode}")
    model = config.models[key]
    reason = reasons[key]
    if model.description:
        st.sidebar.caption(model.description)
    if reason:
        st.sidebar.warning(f"Cannot run here: {reason}.")
    elif warning := vram_warning(model, config):
        st.sidebar.info(warning + ".")

    st.sidebar.divider()
    if mode == "vllm" and model.vllm.remote:
        ok, why = cached_remote_ready(key, config)
        st.sidebar.markdown(f"**Remote endpoint:** {model.vllm.endpoint}")
        st.sidebar.caption("answering" if ok else f"not answering: {why}")
    elif mode == "vllm":
        vllm_controls(config, key, reason)
    elif mode == "local":
        local_controls(config, key, reason)
    else:
        st.sidebar.markdown(f"**Active model:** {model.name if mode == 'cpu' and not reason else 'none'}")
    st.sidebar.caption(host.docker_error or "Docker engine: reachable")
    gpu = host.gpu
    st.sidebar.caption("GPU: " + (", ".join(f"{g.name} ({g.free_gb:.1f} of {g.total_gb:.1f} GB free)"
                                            for g in gpu.gpus) or gpu.error))
    return mode, key, reason


def vllm_controls(config: AppConfig, key: str, cannot_start: str | None) -> None:
    """Active container, its port and age, Switch and Stop; they run as process operations."""
    try:
        statuses = SingleContainerManager(config).status()
    except ChatVLMError as exc:
        st.sidebar.markdown("**Active model:** none")
        st.sidebar.caption(str(exc))
        return
    active = next((s for s in statuses.values() if s.state in (State.READY, State.STARTING)), None)
    if active:
        st.sidebar.markdown(f"**Active model:** {config.models[active.key].name} ({active.state.value})")
        st.sidebar.caption(f"port {active.port} · since {active.since}")
    else:
        st.sidebar.markdown("**Active model:** none")
    for failed in (s for s in statuses.values() if s.state is State.FAILED):
        st.sidebar.caption(f"⚠ {config.models[failed.key].name} failed: {failed.detail}")
    left, right = st.sidebar.columns(2)
    already = active is not None and active.key == key and active.state is State.READY
    busy = bool(OPERATIONS.running())
    if left.button("Switch" if active else "Start", disabled=bool(cannot_start) or already or busy,
                   key="vllm_switch", type="primary"):
        watch(runs.switch(config, key))
    if right.button("Stop", disabled=active is None or busy, key="vllm_stop"):
        watch(runs.stop(config))


def local_controls(config: AppConfig, key: str, cannot_load: str | None) -> None:
    """The model loaded in this process, Load and Unload; they run as process operations."""
    current = ModelLoader.current()
    if current:
        st.sidebar.markdown(f"**Active model:** {current.model.name} (local, {current.device})")
        st.sidebar.caption(f"loaded in {current.load_seconds:.1f} s · {current.memory_bytes / 1e9:.2f} GB")
    else:
        st.sidebar.markdown("**Active model:** none")
    left, right = st.sidebar.columns(2)
    loaded = current is not None and current.key == key
    busy = bool(OPERATIONS.running())
    if left.button("Load", disabled=bool(cannot_load) or loaded or busy, key="local_load", type="primary"):
        watch(runs.load(config, key))
    if right.button("Unload", disabled=current is None or busy, key="local_unload"):
        watch(runs.unload(config))


def watch(op: Operation) -> None:
    """This session follows ``op``: its progress now, its outcome once it ends."""
    st.session_state["watched_op"] = op.id
    st.session_state["redraw"] = True  # the sidebar was drawn before it began


def idle_note(config: AppConfig) -> None:
    deadline = idle_deadline(config)
    if deadline is not None:
        minutes = config.switching.idle_unload_s / 60
        st.sidebar.caption(f"Unloads after {minutes:g} min without use "
                           f"(at {datetime.fromtimestamp(deadline):%H:%M} if unused).")


def describe(op: Operation, config: AppConfig) -> str:
    what = {"switch": "Switching to", "load": "Loading", "stop": "Stopping", "unload": "Unloading"}[op.kind]
    name = config.models[op.key].name if op.key in config.models else "the active model"
    event = op.last_event
    if event is None:
        return f"{what} {name}…"
    usual = f" (usually {event.estimate:.0f} s)" if event.estimate else ""
    return f"{event.message} · {event.elapsed:.0f} s{usual}"


def operations_panel(config: AppConfig):
    """Every operation running in this process, with its own Cancel; the outcome of the one
    this session started. Returns the slot that ``follow`` keeps up to date."""
    for op in OPERATIONS.running():
        if st.sidebar.button(f"Cancel {op.kind}", key=f"cancel_op_{op.id}"):
            op.cancel.set()
    slot = st.sidebar.empty()
    watched = OPERATIONS.get(st.session_state.get("watched_op", -1))
    if watched and not watched.running and watched.error:
        st.sidebar.error(str(watched.error))
        if watched.log_tail:
            with st.sidebar.expander("Container log"):
                st.code(watched.log_tail, language=None)
    elif watched and watched.state == "done" and watched.kind == "unload" and watched.result:
        st.sidebar.caption(f"Unloaded: {watched.result}.")
    return slot


def draw_operations(slot, config: AppConfig) -> None:
    running = OPERATIONS.running()
    with slot.container():
        for op in running:
            st.info(describe(op, config))
            if op.last_event and op.last_event.log_line:
                st.caption(op.last_event.log_line[-200:])
