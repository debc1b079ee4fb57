"""ChatVLMLLM — the Streamlit view. It reads state, calls one engine and shows results;
every decision lives in models/ and managers/."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import streamlit as st

from managers import runs
from managers.availability import (
    default_choice, models_for_mode, probe_host, vram_warning, why_not,
)
from managers.container_manager import SingleContainerManager
from managers.containers import State
from managers.idle import IdleWatcher, idle_deadline
from managers.model_loader import ModelLoader
from managers.operations import OPERATIONS, Operation
from managers.prepare import describe as describe_preparation
from managers.readiness import endpoint_ready
from models import render
from models.answers import GROUNDING_MARK
from models.config import MODE_LABELS, MODES, AppConfig, load_config
from models.document import UPLOAD_TYPES, Document, open_document, select_pages
from models.errors import ChatVLMError
from models.result import Block, PageResult

st.set_page_config(page_title="ChatVLMLLM", page_icon="📄", layout="wide")


@st.cache_resource
def cached_config() -> AppConfig:
    return load_config()


@st.cache_resource(ttl=15, show_spinner="Looking for Docker and GPUs…")
def cached_host(_config: AppConfig):
    return probe_host(_config)


@st.cache_data(ttl=10, show_spinner=False)
def cached_remote_ready(key: str, _config: AppConfig) -> tuple[bool, str]:
    return endpoint_ready(_config.models[key].vllm)


@st.cache_resource(max_entries=4, show_spinner="Opening the document…")
def cached_document(file_id: str, _data: bytes, name: str, _config: AppConfig) -> Document:
    return open_document(_data, name, _config.limits)


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


def choose_pages(document: Document, config: AppConfig) -> list[int] | None:
    if document.page_count == 1:
        return [0]
    limit = config.limits.max_pages
    if document.page_count > limit:
        st.info(f"This document has {document.page_count} pages; up to {limit} are read at a time. "
                "Choose the range to read.")
    first, last = st.slider("Pages", 1, document.page_count,
                            (1, min(document.page_count, limit)), key=f"pages_{document.name}")
    try:
        return select_pages(document, f"{first}-{last}")
    except ChatVLMError as exc:
        st.error(str(exc))
        return None


def task_options(spec, document: Document, first_page: int) -> dict:
    """Settings some tasks need: hiding header/footer for layouts, a box for grounding."""
    options = {}
    if spec.output == "layout":
        options["hide_header_footer"] = st.checkbox("Hide page header and footer", key="hide_hf")
    if spec.prompt.endswith(GROUNDING_MARK):
        image = document.page(first_page).image
        st.caption(f"The box to read, in pixels of the page ({image.width}×{image.height}):")
        cells = st.columns(4)
        box = tuple(int(cells[n].number_input(label, 0, limit, value, key=f"box_{label}"))
                    for n, (label, limit, value) in enumerate(
                        [("x1", image.width, 0), ("y1", image.height, 0),
                         ("x2", image.width, image.width // 2), ("y2", image.height, image.height // 4)]))
        if box[2] > box[0] and box[3] > box[1]:
            options["box"] = box
            preview = PageResult(index=first_page, blocks=[Block(bbox=box, category="Title")])
            st.image(render.overlay(image, preview), caption="The box", width=360)
        else:
            st.warning("x2 must be right of x1 and y2 below y1.")
    return options


class Job:
    """One document being read for this session, in its own thread so that a click
    elsewhere (a rerun) never stops it; Cancel answers at once."""

    def __init__(self, config: AppConfig, choice: runs.Choice, document: Document, indexes: list[int],
                 file_id: str):
        self.choice, self.file_id, self.total = choice, file_id, len(indexes)
        self.cancel = threading.Event()
        self.done_pages = 0
        self.status = ""
        self.run: runs.Run | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._read, args=(config, document, indexes), daemon=True)
        self.thread.start()

    def _read(self, config: AppConfig, document: Document, indexes: list[int]) -> None:
        def on_page(done: int, total: int, page: PageResult) -> None:
            self.done_pages = done

        try:
            self.run = runs.read_document(config, self.choice, document.pages(indexes), on_page=on_page,
                                          on_event=lambda e: setattr(self, "status", e.message),
                                          cancel=self.cancel)
        except ChatVLMError as exc:
            self.error = str(exc)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()


def job_panel():
    """The session's document job: Cancel, and a slot ``follow`` keeps up to date."""
    job: Job | None = st.session_state.get("job")
    if job is None or not job.running:
        return None
    if st.button("Cancel", key="cancel_run"):
        job.cancel.set()
    return st.empty()


def draw_job(slot, job: Job) -> None:
    with slot.container():
        if job.done_pages == 0 and job.status:
            st.info(job.status)
        more = (f"Reading page {job.done_pages + 1} of {job.total}…" if job.done_pages < job.total
                else f"Page {job.done_pages} of {job.total} read.")
        st.progress(job.done_pages / job.total, text=more)


def follow(config: AppConfig, ops_slot, job_slot) -> None:
    """Keep the progress of running operations and of this session's job up to date until
    they end, then show the outcome. A rerun (any click) leaves them running and the next
    run follows them again."""
    followed = st.session_state.pop("redraw", False)
    while True:
        job: Job | None = st.session_state.get("job")
        job_running = job is not None and job.running and job_slot is not None
        if not OPERATIONS.running() and not job_running:
            break
        followed = True
        draw_operations(ops_slot, config)
        if job_running:
            draw_job(job_slot, job)
        time.sleep(0.25)
    if followed:
        st.rerun()


def collect(job: Job | None) -> None:
    """A finished job's result becomes the session's result (or its one error)."""
    if job is None or job.running:
        return
    del st.session_state["job"]
    if job.error:
        st.session_state["run_error"] = job.error
    elif job.run:
        st.session_state["result"] = {"file": job.file_id, "run": job.run}


def page_image(run: runs.Run, document: Document, index: int):
    """The page the boxes belong to: as prepared for reading, else the document's own."""
    return run.images.get(index) or document.page(index).image


def show_result(config: AppConfig, stored: dict, document: Document) -> None:
    run: runs.Run = stored["run"]
    result = run.result
    failed = len(result.failed)
    st.success(f"Read {len(result.pages) - failed} of {len(result.pages)} pages with "
               f"{result.engine} in {result.seconds:.1f} s.")
    pages = {p.index: p for p in result.pages}
    if len(pages) > 1:
        index = st.selectbox("Page", list(pages), key="page_nav",
                             format_func=lambda i: f"Page {i + 1}" + (" ⚠ failed" if pages[i].error else ""))
    else:
        index = next(iter(pages))
    page = pages[index]
    prepared = describe_preparation(page.warnings)
    st.caption(f"Page {page.number}: {page.width}×{page.height} px, read in {page.seconds:.2f} s"
               + (f" · the page was {prepared} before reading" if prepared else ""))
    if page.error:
        st.error(page.error)
    for warning in page.warnings:
        if not describe_preparation([warning]):
            st.warning(warning)

    text_tab, md_tab, layout_tab, json_tab, chat_tab = st.tabs(["Text", "Markdown", "Layout", "JSON", "Chat"])
    with text_tab:
        st.code(page.text or "(no text)", language=None, wrap_lines=True)
    with md_tab:
        st.markdown(page.markdown or "_(no text)_")
    with layout_tab:
        if not page.error:
            shown = f"; the page as read: {prepared}" if prepared else ""
            st.image(render.overlay(page_image(run, document, index), page),
                     caption=f"{len(page.blocks)} boxes{shown}", width="stretch")
            st.caption(" · ".join(f"{cat}" for cat in render.legend(page)))
    with json_tab:
        st.json(page.model_dump(), expanded=1)
    with chat_tab:
        chat(config, run, stored["file"], page_image(run, document, index), index)

    st.markdown("**Download**")
    columns = st.columns(6)
    for n, fmt in enumerate(render.FORMATS):
        columns[n].download_button(f"Page {page.number} .{fmt}", render.PAGE_RENDERERS[fmt](page),
                                   file_name=render.output_name(document.name, fmt, page),
                                   mime=render.FORMATS[fmt], key=f"dl_page_{fmt}")
        columns[n + 3].download_button(f"Document .{fmt}", render.render(result, fmt),
                                       file_name=render.output_name(document.name, fmt),
                                       mime=render.FORMATS[fmt], key=f"dl_doc_{fmt}")


def chat(config: AppConfig, run: runs.Run, file_id: str, image, index: int) -> None:
    """Questions about the page, with the conversation so far, through the same model."""
    mode = run.choice.mode or config.models[run.choice.key].modes[0]
    if mode == "cpu":
        st.info("Chat needs a vision-language model: read the page in vLLM or local mode.")
        return
    history = st.session_state.setdefault(f"chat_{file_id}_{index}", [])
    for role, text in history:
        st.chat_message(role).write(text)
    question = st.chat_input("Ask about this page", key="chat_input")
    if question:
        try:
            answer = runs.chat(config, run.choice, image, history, question)
        except ChatVLMError as exc:
            st.error(str(exc))
            return
        history += [("user", question), ("assistant", answer)]
        st.rerun()


@st.cache_resource
def idle_watcher(_config: AppConfig) -> IdleWatcher:
    """One per app process: unloads what this process holds after switching.idle_unload_s."""
    watcher = IdleWatcher(_config)
    watcher.start()
    return watcher


def main() -> None:
    try:
        config = cached_config()
    except ChatVLMError as exc:
        st.error(str(exc))
        st.stop()
    idle_watcher(config)
    host = cached_host(config)
    mode, key, reason = sidebar(config, host)
    ops_slot = operations_panel(config)
    idle_note(config)
    model = config.models[key]

    st.title("Read a document")
    collect(st.session_state.get("job"))
    uploaded = st.file_uploader("Document image or PDF", type=UPLOAD_TYPES,
                                max_upload_size=config.limits.max_upload_mb)
    if uploaded is None:
        st.info("Upload a scan, photo or PDF to read it.")
        follow(config, ops_slot, None)
        return
    try:
        document = cached_document(uploaded.file_id, uploaded.getvalue(), uploaded.name, config)
    except ChatVLMError as exc:
        st.error(str(exc))
        follow(config, ops_slot, None)
        return
    indexes = choose_pages(document, config)
    task = st.selectbox("Task", list(model.tasks), format_func=lambda t: model.tasks[t].label,
                        key=f"task_{key}")
    options = task_options(model.tasks[task], document, indexes[0] if indexes else 0)
    reading = "job" in st.session_state
    if st.button("Run", type="primary", disabled=reason is not None or indexes is None or reading):
        st.session_state.pop("run_error", None)
        choice = runs.Choice(key, mode, task, **options)
        st.session_state["job"] = Job(config, choice, document, indexes, uploaded.file_id)
    job_slot = job_panel()
    if error := st.session_state.get("run_error"):
        st.error(error)
    stored = st.session_state.get("result")
    if stored and stored["file"] == uploaded.file_id:
        show_result(config, stored, document)
    follow(config, ops_slot, job_slot)


main()
