"""ChatVLMLLM — the Streamlit view. It reads state, calls one engine and shows results;
every decision lives in models/ and managers/."""

from __future__ import annotations

import streamlit as st

from managers.arbiter import Arbiter
from managers.availability import (
    default_choice, models_for_mode, probe_host, vram_warning, why_not,
)
from managers.container_manager import SwitchEvent
from managers.containers import State
from managers.engines import make_engine
from managers.readiness import api_ready
from models import render
from models.answers import GROUNDING_MARK
from models.config import MODE_LABELS, MODES, AppConfig, load_config
from models.document import UPLOAD_TYPES, Document, open_document, select_pages
from models.errors import ChatVLMError, SwitchError
from models.result import Block, OCRResult, PageResult

st.set_page_config(page_title="ChatVLMLLM", page_icon="📄", layout="wide")


@st.cache_resource
def cached_config() -> AppConfig:
    return load_config()


@st.cache_resource(ttl=15, show_spinner="Looking for Docker and GPUs…")
def cached_host(_config: AppConfig):
    return probe_host(_config)


@st.cache_data(ttl=10, show_spinner=False)
def cached_remote_ready(base_url: str, served: str) -> tuple[bool, str]:
    return api_ready(base_url, served)


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
        ok, why = cached_remote_ready(model.vllm.base_url, model.vllm.served_model_name)
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
    """Active container, its port and age, Switch and Stop; switches show live progress."""
    arbiter = Arbiter(config)
    try:
        statuses = arbiter.manager.status()
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
    if left.button("Switch" if active else "Start", disabled=bool(cannot_start) or already,
                   key="vllm_switch", type="primary"):
        if switch_with_progress(arbiter, config, key):
            st.rerun()
    if right.button("Stop", disabled=active is None, key="vllm_stop"):
        with st.sidebar.status("Stopping…") as box:
            stopped = arbiter.stop(on_event=lambda e: box.update(label=e.message))
            box.update(label=f"Stopped {', '.join(stopped) or 'nothing'}.", state="complete")
        st.rerun()


def local_controls(config: AppConfig, key: str, cannot_load: str | None) -> None:
    """The model loaded in this process, Load with progress, and Unload."""
    from managers.model_loader import ModelLoader  # PyTorch is optional

    current = ModelLoader.current()
    if current:
        st.sidebar.markdown(f"**Active model:** {current.model.name} (local, {current.device})")
        st.sidebar.caption(f"loaded in {current.load_seconds:.1f} s · {current.memory_bytes / 1e9:.2f} GB")
    else:
        st.sidebar.markdown("**Active model:** none")
    left, right = st.sidebar.columns(2)
    loaded = current is not None and current.key == key
    if left.button("Load", disabled=bool(cannot_load) or loaded, key="local_load", type="primary"):
        if load_with_progress(config, key):
            st.rerun()
    if right.button("Unload", disabled=current is None, key="local_unload"):
        st.session_state["unloaded"] = str(ModelLoader.unload_all_models())
        st.rerun()
    if note := st.session_state.pop("unloaded", None):
        st.sidebar.caption(f"Unloaded: {note}.")


def load_with_progress(config: AppConfig, key: str) -> bool:
    from managers.model_loader import ModelLoader

    name = config.models[key].name
    with st.sidebar.status(f"Loading {name}…", expanded=True) as box:
        try:
            ModelLoader(config, Arbiter(config)).load_model(key, on_progress=lambda m: box.update(label=m))
        except ChatVLMError as exc:
            box.update(label=f"Loading {name} failed", state="error")
            st.sidebar.error(str(exc))
            return False
        box.update(state="complete", expanded=False)
    return True


def switch_with_progress(arbiter: Arbiter, config: AppConfig, key: str) -> bool:
    name = config.models[key].name
    with st.sidebar.status(f"Switching to {name}…", expanded=True) as box:
        newest = st.empty()

        def on_event(event: SwitchEvent) -> None:
            usual = f" (usually {event.estimate:.0f} s)" if event.estimate else ""
            box.update(label=f"{event.message} · {event.elapsed:.0f} s{usual}")
            if event.log_line:
                newest.caption(event.log_line[-200:])

        try:
            arbiter.switch(key, on_event=on_event)
        except ChatVLMError as exc:
            box.update(label=f"Switch to {name} failed", state="error")
            st.sidebar.error(str(exc))
            if isinstance(exc, SwitchError) and exc.log_tail:
                with st.sidebar.expander("Container log"):
                    st.code(exc.log_tail, language=None)
            return False
        box.update(label=f"{name} is ready.", state="complete", expanded=False)
    return True


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


def run(config: AppConfig, mode: str, key: str, task: str, document: Document,
        indexes: list[int], options: dict, file_id: str) -> OCRResult | None:
    vllm = config.models[key].vllm
    if mode == "vllm" and not vllm.remote:
        # The same path as the sidebar's Switch: joins the model if it is already running.
        if not switch_with_progress(Arbiter(config), config, key):
            return None
    if mode == "local" and not load_with_progress(config, key):  # the sidebar's Load
        return None
    try:
        engine = make_engine(config, key, mode)
    except ChatVLMError as exc:
        st.error(str(exc))
        return None
    for name, value in options.items():
        setattr(engine, name, value)
    # A click on Cancel reruns the script, which interrupts engine.ocr at its next progress
    # update; the engine then sends no more pages, and the pages read so far are kept.
    cancel_slot = st.empty()
    cancel_slot.button("Cancel", key="cancel_run")
    bar = st.progress(0.0, text=f"Reading page 1 of {len(indexes)}…")
    read: dict[int, PageResult] = {}

    def on_page(done: int, total: int, page: PageResult) -> None:
        read[page.index] = page
        pages = [read.get(i) or PageResult(index=i, error=f"Page {i + 1} was not read: cancelled.")
                 for i in indexes]
        partial = OCRResult(model=key, engine=engine.engine_name, task=task, pages=pages)
        st.session_state["result"] = {"file": file_id, "result": partial, "mode": mode, "key": key}
        more = f"Reading page {done + 1} of {total}…" if done < total else f"Page {done} of {total} read."
        bar.progress(done / total, text=more)

    result = engine.ocr(document.pages(indexes), task, on_page=on_page)
    cancel_slot.empty()
    return result


def show_result(config: AppConfig, stored: dict, document: Document) -> None:
    result = stored["result"]
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
    st.caption(f"Page {page.number}: {page.width}×{page.height} px, read in {page.seconds:.2f} s")
    if page.error:
        st.error(page.error)
    for warning in page.warnings:
        st.warning(warning)

    text_tab, md_tab, layout_tab, json_tab, chat_tab = st.tabs(["Text", "Markdown", "Layout", "JSON", "Chat"])
    with text_tab:
        st.code(page.text or "(no text)", language=None, wrap_lines=True)
    with md_tab:
        st.markdown(page.markdown or "_(no text)_")
    with layout_tab:
        if not page.error:
            st.image(render.overlay(document.page(index).image, page),
                     caption=f"{len(page.blocks)} boxes", width="stretch")
            st.caption(" · ".join(f"{cat}" for cat in render.legend(page)))
    with json_tab:
        st.json(page.model_dump(), expanded=1)
    with chat_tab:
        chat(config, stored, document, index)

    st.markdown("**Download**")
    columns = st.columns(6)
    for n, fmt in enumerate(render.FORMATS):
        columns[n].download_button(f"Page {page.number} .{fmt}", render.PAGE_RENDERERS[fmt](page),
                                   file_name=render.output_name(document.name, fmt, page),
                                   mime=render.FORMATS[fmt], key=f"dl_page_{fmt}")
        columns[n + 3].download_button(f"Document .{fmt}", render.render(result, fmt),
                                       file_name=render.output_name(document.name, fmt),
                                       mime=render.FORMATS[fmt], key=f"dl_doc_{fmt}")


def chat(config: AppConfig, stored: dict, document: Document, index: int) -> None:
    """Questions about the page, with the conversation so far, through the same model."""
    if stored["mode"] == "cpu":
        st.info("Chat needs a vision-language model: read the page in vLLM or local mode.")
        return
    history = st.session_state.setdefault(f"chat_{stored['file']}_{index}", [])
    for role, text in history:
        st.chat_message(role).write(text)
    question = st.chat_input("Ask about this page", key="chat_input")
    if question:
        try:
            engine = make_engine(config, stored["key"], stored["mode"])
            answer = engine.chat(document.page(index).image, history, question)
        except ChatVLMError as exc:
            st.error(str(exc))
            return
        history += [("user", question), ("assistant", answer)]
        st.rerun()


def main() -> None:
    try:
        config = cached_config()
    except ChatVLMError as exc:
        st.error(str(exc))
        st.stop()
    host = cached_host(config)
    mode, key, reason = sidebar(config, host)
    model = config.models[key]

    st.title("Read a document")
    uploaded = st.file_uploader("Document image or PDF", type=UPLOAD_TYPES,
                                max_upload_size=config.limits.max_upload_mb)
    if uploaded is None:
        st.info("Upload a scan, photo or PDF to read it.")
        return
    try:
        document = cached_document(uploaded.file_id, uploaded.getvalue(), uploaded.name, config)
    except ChatVLMError as exc:
        st.error(str(exc))
        return
    indexes = choose_pages(document, config)
    task = st.selectbox("Task", list(model.tasks), format_func=lambda t: model.tasks[t].label,
                        key=f"task_{key}")
    options = task_options(model.tasks[task], document, indexes[0] if indexes else 0)
    if st.button("Run", type="primary", disabled=reason is not None or indexes is None):
        result = run(config, mode, key, task, document, indexes, options, uploaded.file_id)
        if result:
            st.session_state["result"] = {"file": uploaded.file_id, "result": result, "mode": mode, "key": key}
    stored = st.session_state.get("result")
    if stored and stored["file"] == uploaded.file_id:
        show_result(config, stored, document)


main()
