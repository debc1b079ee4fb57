"""The Read view: upload documents, choose pages and a task, read them in the background
and show the results."""

from __future__ import annotations

import streamlit as st

from managers import runs
from managers.batch import Batch, Item
from managers.runtime import Runtime
from models import render
from models.answers import GROUNDING_MARK
from models.config import FIELDS, AppConfig
from models.document import UPLOAD_TYPES, Document, select_pages
from models.errors import ChatVLMError
from models.result import Block, PageResult
from views.cached import cached_document
from views.fields import fields_sheet
from views.i18n import local, said, shown_as, t, tn, tr
from views.progress import Watched
from views.result import download_all, show_result


def choose_pages(document: Document, config: AppConfig, key: str = "pages") -> list[int] | None:
    if document.page_count == 1:
        return [0]
    limit = config.limits.max_pages
    if document.page_count > limit:
        st.info(tn("This document has {n} page; up to {limit} are read at a time. Choose the range to read.",
                   "This document has {n} pages; up to {limit} are read at a time. Choose the range to read.",
                   document.page_count, limit=limit))
    first, last = st.slider(t("Pages"), 1, document.page_count,
                            (1, min(document.page_count, limit)), key=f"{key}_{document.name}")
    try:
        return select_pages(document, f"{first}-{last}")
    except ChatVLMError as exc:
        st.error(said(exc))
        return None


def task_options(spec, document: Document, first_page: int) -> dict:
    """Settings some tasks need: hiding header/footer for layouts, a box for grounding."""
    options = {}
    if spec.output == "layout":
        options["hide_header_footer"] = st.checkbox(t("Hide page header and footer"), key="hide_hf")
    if spec.prompt.endswith(GROUNDING_MARK):
        image = document.page(first_page).image
        st.caption(t("The box to read, in pixels of the page ({width}×{height}):",
                     width=str(image.width), height=str(image.height)))
        cells = st.columns(4)
        box = tuple(int(cells[n].number_input(label, 0, limit, value, key=f"box_{label}"))
                    for n, (label, limit, value) in enumerate(
                        [("x1", image.width, 0), ("y1", image.height, 0),
                         ("x2", image.width, image.width // 2), ("y2", image.height, image.height // 4)]))
        if box[2] > box[0] and box[3] > box[1]:
            options["box"] = box
            preview = PageResult(index=first_page, blocks=[Block(bbox=box, category="Title")])
            st.image(render.overlay(image, preview), caption=t("The box"), width=360)
        else:
            st.warning(t("x2 must be right of x1 and y2 below y1."))
    return options


def template_picker(config: AppConfig) -> str | None:
    """The template whose fields are read (a key of config.yaml's ``templates:``); None when
    the config has none."""
    if not config.templates:
        st.warning(t("config.yaml has no templates: add one under templates: to read fields."))
        return None
    return st.selectbox(t("Template"), list(config.templates), key="template",
                        format_func=shown_as(config.templates, lambda k: local(config.templates[k].label)))


def job_panel():
    """The session's batch of documents: Cancel, and a slot ``follow`` keeps up to date."""
    job: Batch | None = st.session_state.get("job")
    if job is None or not job.running:
        return None
    if st.button(t("Cancel"), key="cancel_run"):
        job.cancel.set()
    return st.empty()


def draw_job(slot, job: Batch) -> None:
    with slot.container():
        if len(job.items) > 1:
            item = job.items[job.current]
            st.progress(job.current / len(job.items),
                        text=said(t("File {number} of {count}: {name}", number=job.current + 1,
                                    count=len(job.items), name=item.name)))
        if job.done == 0 and job.status:
            st.info(said(job.status))
        if job.total:
            more = (t("Reading page {page} of {total}…", page=job.done + 1, total=job.total)
                    if job.done < job.total else t("Page {done} of {total} read.", done=job.done, total=job.total))
            st.progress(job.done / job.total, text=more)
        if job.streaming:  # a layout answer is JSON until it is complete: shown as it comes
            index, text = job.streaming
            st.caption(t("Page {page} — reading…", page=index + 1))
            st.code(text, language=None, wrap_lines=True)


def collect(job: Batch | None) -> None:
    """A finished batch's results become the session's results (and its errors, one each)."""
    if job is None or job.running:
        return
    del st.session_state["job"]
    st.session_state["run_errors"] = job.errors
    if job.history_warning:
        st.warning(said(job.history_warning))
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
            items.append(Item(upload.file_id, document.name, refused=exc.message))
    return items


def read_view(runtime: Runtime, mode: str, key: str, reason: str | None) -> Watched | None:
    config = runtime.config
    model = config.models[key]
    st.title(t("Read a document"))
    collect(st.session_state.get("job"))
    # A key keeps the uploads when the language (so the label) changes.
    uploads = st.file_uploader(t("Document images or PDFs"), type=UPLOAD_TYPES, accept_multiple_files=True,
                               max_upload_size=config.limits.max_upload_mb, key="read_uploads")
    if not uploads:
        st.info(t("Upload scans, photos or PDFs to read them."))
        return None
    documents = {}
    for upload in uploads:
        try:
            documents[upload.file_id] = cached_document(upload.file_id, upload.getvalue(), upload.name, config)
        except ChatVLMError as exc:
            st.error(said(exc))
    if not documents:
        return None
    names = {upload.file_id: upload.name for upload in uploads if upload.file_id in documents}
    current = (st.selectbox(t("Document"), list(names), format_func=names.get, key="document")
               if len(names) > 1 else next(iter(names)))
    document = documents[current]
    indexes = choose_pages(document, config)
    # Every model reads a template's fields besides its own tasks.
    tasks = {**{k: local(task.label) for k, task in model.tasks.items()}, FIELDS: t("Fields")}
    task = st.selectbox(t("Task"), list(tasks), key=f"task_{key}", format_func=shown_as(tasks, tasks.get))
    if task == FIELDS:
        options = {"template": template_picker(config)}
    else:
        options = task_options(model.tasks[task], document, indexes[0] if indexes else 0)
    reading = "job" in st.session_state
    label = t("Run") if len(names) == 1 else tn("Run on {n} file", "Run on {n} files", len(names))
    ready = reason is None and indexes is not None and (task != FIELDS or options["template"] is not None)
    if st.button(label, type="primary", disabled=not ready or reading):
        choice = runs.Choice(key, mode, task, **options)
        st.session_state["job"] = Batch(runtime, choice, batch_items(uploads, documents, current, indexes,
                                                                       config))
        st.session_state["run_errors"] = {}
    job_slot = job_panel()
    for file_id, error in st.session_state.get("run_errors", {}).items():
        name = names.get(file_id) or t("A file")
        st.error(said(error) if len(names) == 1 else f"{name}: {tr(error)}")
    results = {f: r for f, r in st.session_state.get("results", {}).items() if f in documents}
    if current in results:
        show_result(runtime, results[current], current, document)
    if len(results) > 1:
        fields_sheet(config, results, documents)
        download_all(results, documents)
    job = st.session_state.get("job")
    return Watched(job, job_slot, draw_job) if job is not None and job_slot is not None else None
