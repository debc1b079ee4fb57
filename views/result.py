"""One read document on screen: its fields (the fields task), its pages' text, Markdown,
layout, JSON and chat, and its downloads."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from html import escape
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from managers import runs
from managers.prepare import describe as describe_preparation
from managers.runtime import Runtime
from models import exports, layout, render, tables
from models.config import FIELDS
from models.document import Document
from models.elements import Element, ListBlock, Table
from models.errors import ChatVLMError
from views.fields import show_fields
from views.i18n import language, said, shown_as, t, tn, tr


EXPORT_FAILED = "export_failed"  # the sentence of a download that could not be made, shown once


def page_image(run: runs.Run, document: Document, index: int):
    """The page the boxes belong to: as prepared for reading, else the document's own."""
    return run.images.get(index) or document.page(index).image


def table_frame(table: Table) -> pd.DataFrame:
    """A table for st.dataframe: its first row as the header (made unique, as Arrow needs)."""
    header, *rows = table.cells if len(table.cells) > 1 else [[""] * table.width, *table.cells]
    names: list[str] = []
    for n, name in enumerate(header, start=1):
        name = name.strip() or t("column {n}", n=n)
        names.append(name if name not in names else f"{name} ({n})")
    return pd.DataFrame(rows, columns=names)


def show_elements(elements: Sequence[Element], image: Image.Image) -> None:
    """The page from its typed blocks. What a model wrote is shown as text, never read as
    Markdown or HTML, so nothing in an answer becomes a link, an image or a script; tables are
    tables, formulas LaTeX, and a picture is cropped from the page itself."""
    if not elements:
        st.markdown(t("_(no text)_"))
    for block in elements:
        if block.type == "heading":
            # As escaped HTML, not Markdown, which makes a link of any address in the text;
            # one level below the view's own title.
            level = min(block.level + 1, 6)
            st.html(f"<h{level}>{escape(block.text)}</h{level}>")
        elif block.type == "paragraph":
            st.text(block.text)
        elif block.type == "list":
            st.text(list_text(block))
        elif block.type == "table" and block.cells:
            st.dataframe(table_frame(block), hide_index=True)
        elif block.type == "formula" and "$" not in block.latex:
            st.latex(block.latex)
        elif block.type == "formula":
            # st.latex writes the formula into "$$ … $$" Markdown, which a "$" in it could close,
            # and what followed would be read as Markdown: shown as its source instead.
            st.code(block.latex, language="latex", wrap_lines=True)
        elif block.type == "code":
            st.code(block.text, language=None, wrap_lines=True)
        elif block.type == "picture" and (picture := layout.crop(image, block.bbox)) is not None:
            st.image(picture)


def list_text(block: ListBlock) -> str:
    """A list as lines of text, nested items indented, ordered ones numbered at their level."""
    lines, counts = [], [0]
    for item in block.items:
        counts = (counts + [0] * item.level)[:item.level + 1]
        counts[-1] += 1
        marker = item.marker or (f"{counts[-1]}." if block.ordered else "•")
        indent = "    " * item.level
        lines.append(f"{indent}{marker} " + item.text.replace("\n", "\n" + indent + " " * (len(marker) + 1)))
    return "\n".join(lines)


def show_result(runtime: Runtime, run: runs.Run, file_id: str, document: Document) -> None:
    result = run.result
    failed = len(result.failed)
    # The same English for one page ("Read 1 of 1 pages"); Russian declines it by the count.
    st.success(tn("Read {read} of {n} pages with {engine} in {seconds:.1f} s.",
                  "Read {read} of {n} pages with {engine} in {seconds:.1f} s.", len(result.pages),
                  read=len(result.pages) - failed, engine=result.engine, seconds=result.seconds))
    pages = {p.index: p for p in result.pages}
    if len(pages) > 1:
        index = st.selectbox(t("Page"), list(pages), key="page_nav",
                             format_func=shown_as(pages, lambda i: t("Page {page} ⚠ failed", page=i + 1)
                                                  if pages[i].error else t("Page {page}", page=i + 1)))
    else:
        index = next(iter(pages))
    page = pages[index]
    prepared = describe_preparation(page.warnings, language())
    size = {"page": page.number, "width": str(page.width), "height": str(page.height), "seconds": page.seconds}
    st.caption(t("Page {page}: {width}×{height} px, read in {seconds:.2f} s · the page was {prepared} before "
                 "reading", prepared=prepared, **size) if prepared
               else t("Page {page}: {width}×{height} px, read in {seconds:.2f} s", **size))
    if page.error:
        st.error(said(page.error))
    for warning in page.warnings:
        if not describe_preparation([warning]):
            st.warning(said(warning))

    names = [t("Text"), t("Markdown"), t("Layout"), t("JSON"), t("Chat")]
    if result.task == FIELDS:
        fields_tab, *tabs = st.tabs([t("Fields"), *names])
        with fields_tab:
            show_fields(runtime, run, file_id, document.name, page_image(run, document, index), index)
    else:
        tabs = st.tabs(names)
    text_tab, md_tab, layout_tab, json_tab, chat_tab = tabs
    with text_tab:
        st.code(page.text or t("(no text)"), language=None, wrap_lines=True)
    with md_tab:
        show_elements(page.elements, page_image(run, document, index))
    with layout_tab:
        if not page.error:
            boxes = len(page.blocks)
            st.image(render.overlay(page_image(run, document, index), page),
                     caption=(tn("{n} box; the page as read: {prepared}", "{n} boxes; the page as read: {prepared}",
                                 boxes, prepared=prepared) if prepared else tn("{n} box", "{n} boxes", boxes)),
                     width="stretch")
            st.text(" · ".join(render.legend(page)))
    with json_tab:
        st.json(page.model_dump(context={"lang": language()}), expanded=1)
    with chat_tab:
        chat(runtime, run, file_id, page_image(run, document, index), index)

    st.markdown(t("**Download**"))
    columns = st.columns(len(render.FORMATS))
    for n, fmt in enumerate(render.FORMATS):
        columns[n].download_button(t("Page {page} .{format}", page=page.number, format=fmt),
                                   render.page_json(page, language()) if fmt == "json"
                                   else render.PAGE_RENDERERS[fmt](page),
                                   file_name=render.output_name(document.name, fmt, page),
                                   mime=render.FORMATS[fmt], key=f"dl_page_{fmt}")
    if failed_export := st.session_state.pop(EXPORT_FAILED, None):
        st.error(failed_export)
    found = len(tables.of_result(result))
    columns = st.columns(len(exports.ALL_FORMATS))
    for n, fmt in enumerate(exports.ALL_FORMATS):
        if fmt == "csv" and not found:
            columns[n].button(t("Document .{format}", format=fmt), disabled=True, key="dl_doc_csv",
                              help=t("No tables were found."))
            continue
        name = f"{Path(document.name).stem or 'document'}.csv.zip" if fmt == "csv" and found > 1 else None
        made = partial(_export, result, fmt, document, lambda i: page_image(run, document, i))
        columns[n].download_button(
            t("Document .{format}", format=fmt), made if fmt in exports.FORMATS else made(),
            file_name=name or render.output_name(document.name, fmt),
            mime="application/zip" if name else exports.MIME.get(fmt) or render.FORMATS.get(fmt, "text/csv"),
            key=f"dl_doc_{fmt}")


def _export(result, fmt: str, document: Document, image) -> bytes:
    """A document's file, made when its button is clicked. A failure is said on the page after
    the click (the button reruns it) and the file holds that sentence: a click cannot show an
    error itself."""
    try:
        return exports.file_for(result, fmt, document.name, image, language()).data
    except ChatVLMError as exc:
        st.session_state[EXPORT_FAILED] = said(exc)
        return tr(exc).encode("utf-8")


def download_all(results: dict[str, runs.Run], documents: dict[str, Document]) -> None:
    """Every result of this session in one ZIP, in the chosen format."""
    st.divider()
    left, right = st.columns([1, 2])
    fmt = left.selectbox(t("Format for all files"), exports.ALL_FORMATS, key="zip_format")
    items = [(documents[f].name, run.result, partial(page_image, run, documents[f])) for f, run in results.items()]
    right.download_button(tn("All {n} file as .zip ({format})", "All {n} files as .zip ({format})", len(items),
                             format=fmt), lambda: exports.bundle(items, fmt, language()),
                          file_name=f"chatvlmllm-{fmt}.zip", mime="application/zip", key="dl_zip")


def chat(runtime: Runtime, run: runs.Run, file_id: str, image, index: int) -> None:
    """Questions about the page, with the conversation so far, through the same model."""
    if runs.check_mode(runtime.config, run.choice.key, run.choice.mode) == "cpu":
        st.info(t("Chat needs a vision-language model: read the page in vLLM or local mode."))
        return
    history = st.session_state.setdefault(f"chat_{file_id}_{index}", [])
    # As text: a model's answer (and a question pasted from elsewhere) is never read as Markdown,
    # so no image or link in it is loaded.
    for role, text in history:
        st.chat_message(role).text(text)
    question = st.chat_input(t("Ask about this page"), key="chat_input")
    if question:
        st.chat_message("user").text(question)
        shown = st.chat_message("assistant").empty()
        try:
            answer = runs.chat(runtime, run.choice, image, history, question, on_text=shown.text)
        except ChatVLMError as exc:
            shown.error(said(exc))
            return
        history += [("user", question), ("assistant", answer)]
        st.rerun()
