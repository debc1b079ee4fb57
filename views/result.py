"""One read document on screen: its pages' text, Markdown, layout, JSON and chat, and its
downloads."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from managers import runs
from managers.prepare import describe as describe_preparation
from models import exports, render, tables
from models.config import AppConfig
from models.document import Document
from models.errors import ChatVLMError


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
