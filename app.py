"""ChatVLMLLM — the Streamlit view. It reads state, calls one engine and shows results;
every decision lives in models/ and managers/."""

from __future__ import annotations

import time
from datetime import datetime
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from managers import runs
from managers.batch import Batch, Item
from managers.history import History
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
from models import exports, render, tables
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


def job_panel():
    """The session's batch of documents: Cancel, and a slot ``follow`` keeps up to date."""
    job: Batch | None = st.session_state.get("job")
    if job is None or not job.running:
        return None
    if st.button("Cancel", key="cancel_run"):
        job.cancel.set()
    return st.empty()


def draw_job(slot, job: Batch) -> None:
    with slot.container():
        if len(job.items) > 1:
            item = job.items[job.current]
            st.progress(job.current / len(job.items),
                        text=f"File {job.current + 1} of {len(job.items)}: {item.name}")
        if job.done == 0 and job.status:
            st.info(job.status)
        if job.total:
            more = (f"Reading page {job.done + 1} of {job.total}…" if job.done < job.total
                    else f"Page {job.done} of {job.total} read.")
            st.progress(job.done / job.total, text=more)
        if job.streaming:  # a layout answer is JSON until it is complete: shown as it comes
            index, text = job.streaming
            st.caption(f"Page {index + 1} — reading…")
            st.code(text, language=None, wrap_lines=True)


def follow(config: AppConfig, ops_slot, job_slot) -> None:
    """Keep the progress of running operations and of this session's job up to date until
    they end, then show the outcome. A rerun (any click) leaves them running and the next
    run follows them again."""
    followed = st.session_state.pop("redraw", False)
    while True:
        job: Batch | None = st.session_state.get("job")
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


def collect(job: Batch | None) -> None:
    """A finished batch's results become the session's results (and its errors, one each)."""
    if job is None or job.running:
        return
    del st.session_state["job"]
    st.session_state["run_errors"] = job.errors
    if job.history_warning:
        st.warning(job.history_warning)
    results = st.session_state.setdefault("results", {})
    results.update(job.runs)


def batch_items(uploads, documents: dict, current: str, indexes: list[int] | None,
                config: AppConfig) -> list[Item]:
    """Every readable upload: the document on view with its chosen pages, the others whole."""
    items = []
    for upload in uploads:
        document = documents.get(upload.file_id)
        if document is None:
            continue  # refused at upload, with its sentence already shown
        if upload.file_id == current:
            items.append(Item(upload.file_id, document.name, document.pages(indexes), data=document.data))
            continue
        try:
            items.append(Item(upload.file_id, document.name, document.pages(select_pages(document, None)),
                              data=document.data))
        except ChatVLMError as exc:
            items.append(Item(upload.file_id, document.name, refused=str(exc)))
    return items


def page_image(run: runs.Run, document: Document, index: int):
    """The page the boxes belong to: as prepared for reading, else the document's own."""
    return run.images.get(index) or document.page(index).image


def table_frame(grid: tables.Grid) -> pd.DataFrame:
    """A table for st.dataframe: its first row as the header (made unique, as Arrow needs)."""
    header, *rows = grid.cells if len(grid.cells) > 1 else [[""] * len(grid.cells[0]), *grid.cells]
    names: list[str] = []
    for n, name in enumerate(header, start=1):
        name = name.strip() or f"column {n}"
        names.append(name if name not in names else f"{name} ({n})")
    return pd.DataFrame(rows, columns=names)


def show_markdown(markdown: str) -> None:
    """Markdown with formulas as LaTeX, and every table as a real table (never raw HTML)."""
    if not markdown.strip():
        st.markdown("_(no text)_")
    for segment in tables.segments(markdown):
        if isinstance(segment, tables.Grid):
            st.dataframe(table_frame(segment), hide_index=True)
        elif segment.strip():
            st.markdown(segment)


def show_result(config: AppConfig, run: runs.Run, file_id: str, document: Document) -> None:
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
        show_markdown(page.markdown)
    with layout_tab:
        if not page.error:
            shown = f"; the page as read: {prepared}" if prepared else ""
            st.image(render.overlay(page_image(run, document, index), page),
                     caption=f"{len(page.blocks)} boxes{shown}", width="stretch")
            st.caption(" · ".join(f"{cat}" for cat in render.legend(page)))
    with json_tab:
        st.json(page.model_dump(), expanded=1)
    with chat_tab:
        chat(config, run, file_id, page_image(run, document, index), index)

    st.markdown("**Download**")
    columns = st.columns(len(render.FORMATS))
    for n, fmt in enumerate(render.FORMATS):
        columns[n].download_button(f"Page {page.number} .{fmt}", render.PAGE_RENDERERS[fmt](page),
                                   file_name=render.output_name(document.name, fmt, page),
                                   mime=render.FORMATS[fmt], key=f"dl_page_{fmt}")
    found = len(tables.of_result(result))
    columns = st.columns(len(exports.ALL_FORMATS))
    for n, fmt in enumerate(exports.ALL_FORMATS):
        if fmt == "csv" and not found:
            columns[n].button("Document .csv", disabled=True, key="dl_doc_csv", help="No tables were found.")
            continue
        name = f"{Path(document.name).stem or 'document'}.csv.zip" if fmt == "csv" and found > 1 else None
        made = partial(lambda f: exports.file_for(result, f, document.name,
                                                  lambda i: page_image(run, document, i)).data, fmt)
        columns[n].download_button(
            f"Document .{fmt}", made if fmt in exports.FORMATS else made(),
            file_name=name or render.output_name(document.name, fmt),
            mime="application/zip" if name else exports.MIME.get(fmt) or render.FORMATS.get(fmt, "text/csv"),
            key=f"dl_doc_{fmt}")


def download_all(results: dict[str, runs.Run], documents: dict[str, Document]) -> None:
    """Every result of this session in one ZIP, in the chosen format."""
    st.divider()
    left, right = st.columns([1, 2])
    fmt = left.selectbox("Format for all files", exports.ALL_FORMATS, key="zip_format")
    items = [(documents[f].name, run.result, partial(page_image, run, documents[f])) for f, run in results.items()]
    right.download_button(f"All {len(items)} files as .zip ({fmt})", lambda: exports.bundle(items, fmt),
                          file_name=f"chatvlmllm-{fmt}.zip", mime="application/zip", key="dl_zip")


def chat(config: AppConfig, run: runs.Run, file_id: str, image, index: int) -> None:
    """Questions about the page, with the conversation so far, through the same model."""
    if runs.check_mode(config, run.choice.key, run.choice.mode) == "cpu":
        st.info("Chat needs a vision-language model: read the page in vLLM or local mode.")
        return
    history = st.session_state.setdefault(f"chat_{file_id}_{index}", [])
    for role, text in history:
        st.chat_message(role).write(text)
    question = st.chat_input("Ask about this page", key="chat_input")
    if question:
        st.chat_message("user").write(question)
        shown = st.chat_message("assistant").empty()
        try:
            answer = runs.chat(config, run.choice, image, history, question, on_text=shown.write)
        except ChatVLMError as exc:
            shown.error(str(exc))
            return
        history += [("user", question), ("assistant", answer)]
        st.rerun()


def history_view(config: AppConfig) -> None:
    """Runs kept from earlier (this app, other sessions, the CLI), newest first: reopen one
    with every tab and download as if just read, or delete it."""
    st.title("History")
    history = History(config)
    search = st.text_input("Search by file name", key="history_search")
    try:
        entries = history.list(search or None)
    except ChatVLMError as exc:
        st.error(str(exc))
        return
    if history.warning:
        st.warning(history.warning)
    if not entries:
        st.info("No runs kept yet." if not search else "No run of a file with that name.")
        return
    labels = {e.id: f"{e.created:%Y-%m-%d %H:%M} · {e.name} · {e.pages} p. · {e.model} ({e.mode}, {e.task}) · "
                    f"{e.seconds:.1f} s" for e in entries}
    chosen = st.selectbox("Run", list(labels), format_func=labels.get, key="history_run")
    if st.button("Delete this run", key="history_delete"):
        history.delete(chosen)
        st.rerun()
    try:
        stored = history.get(chosen)
    except ChatVLMError as exc:
        st.error(str(exc))
        return
    if stored.document is None:
        st.warning(f"'{stored.entry.name}' was over history.max_document_mb, so only its text was kept.")
        for page in stored.result.pages:
            st.code(page.text or "(no text)", language=None, wrap_lines=True)
        return
    document = open_document(stored.document, stored.entry.name, config.limits)
    show_result(config, stored.run, f"history-{chosen}", document)


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

    view = st.sidebar.radio("View", ["Read", "History"], horizontal=True, key="view")
    if view == "History":
        history_view(config)
        follow(config, ops_slot, None)
        return
    st.title("Read a document")
    collect(st.session_state.get("job"))
    uploads = st.file_uploader("Document images or PDFs", type=UPLOAD_TYPES, accept_multiple_files=True,
                               max_upload_size=config.limits.max_upload_mb)
    if not uploads:
        st.info("Upload scans, photos or PDFs to read them.")
        follow(config, ops_slot, None)
        return
    documents = {}
    for upload in uploads:
        try:
            documents[upload.file_id] = cached_document(upload.file_id, upload.getvalue(), upload.name, config)
        except ChatVLMError as exc:
            st.error(str(exc))
    if not documents:
        follow(config, ops_slot, None)
        return
    names = {upload.file_id: upload.name for upload in uploads if upload.file_id in documents}
    current = (st.selectbox("Document", list(names), format_func=names.get, key="document")
               if len(names) > 1 else next(iter(names)))
    document = documents[current]
    indexes = choose_pages(document, config)
    task = st.selectbox("Task", list(model.tasks), format_func=lambda t: model.tasks[t].label,
                        key=f"task_{key}")
    options = task_options(model.tasks[task], document, indexes[0] if indexes else 0)
    reading = "job" in st.session_state
    label = "Run" if len(names) == 1 else f"Run on {len(names)} files"
    if st.button(label, type="primary", disabled=reason is not None or indexes is None or reading):
        choice = runs.Choice(key, mode, task, **options)
        st.session_state["job"] = Batch(config, choice, batch_items(uploads, documents, current, indexes,
                                                                       config))
        st.session_state["run_errors"] = {}
    job_slot = job_panel()
    for file_id, error in st.session_state.get("run_errors", {}).items():
        st.error(error if len(names) == 1 else f"{names.get(file_id, 'A file')}: {error}")
    results = {f: r for f, r in st.session_state.get("results", {}).items() if f in documents}
    if current in results:
        show_result(config, results[current], current, document)
    if len(results) > 1:
        download_all(results, documents)
    follow(config, ops_slot, job_slot)


main()
