"""A fields run on screen: the template's values in a table a person corrects, beside the
page with each value's box, and downloadable as its sheet; and the one sheet of several
documents read with a template.

A correction is checked like a value read (models.fields.collect.correct), the value read
kept beside it, and applied by the history to the run's fields as kept there at once
(managers/history.py), so the run reopened later shows it."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from managers import runs
from managers.runtime import Runtime
from models import exports, render
from models.config import FIELDS, AppConfig
from models.document import Document
from models.errors import ChatVLMError, ConfigError
from models.fields.collect import correct
from models.fields.result import LIST_SEPARATOR, FieldResult, Value, as_text, status_text
from models.fields.sheet import sheet_bytes
from models.fields.template import Template, kept
from models.result import OCRResult
from views.i18n import language, local, said, t, tn, tr

# A value's box on the page, in its status's colour (a missing value has none).
COLOURS = {"valid": (44, 160, 44), "invalid": (214, 39, 40), "conflict": (255, 127, 14)}
SHEET_FORMATS = {"xlsx": exports.MIME["xlsx"], "csv": "text/csv", "json": "application/json"}
SAVE_FAILED = "fields_save_failed"  # why the last correction was not kept, shown after its rerun


def value_of(template: Template, name: str, text: str | None) -> Value | None:
    """A cell a person typed as the field's value: a list field's items split again."""
    if text is None or not text.strip():
        return None
    if template.field(name).type == "list":
        return [item.strip() for item in text.split(LIST_SEPARATOR.strip()) if item.strip()]
    return text.strip()


def read_text(field: FieldResult) -> str:
    """What was read before a person corrected the field: its value, or a conflict's values."""
    if not field.corrected:
        return ""
    if field.original is not None:
        return as_text(field.original)
    read = dict.fromkeys(as_text(found.value) for found in field.found)
    return " | ".join(read) if read else t("(nothing read)")


def fields_frame(template: Template | None, fields: list[FieldResult]) -> pd.DataFrame:
    """One row per field, numbered as its box on the page is."""
    labels = {f.name: local(f.label) for f in template.fields} if template else {}
    rows = [{"field": labels.get(f.name, f.name), "value": as_text(f.value), "status": tr(status_text(f)),
             "page": str(f.page + 1) if f.page is not None else "",
             "read": read_text(f)} for f in fields]
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1),
                        columns=["field", "value", "status", "page", "read"])


def marks(fields: list[FieldResult], index: int) -> list:
    """The boxes of the values read on page ``index``, labelled with their row's number."""
    return [(str(n), found.bbox, COLOURS[f.status]) for n, f in enumerate(fields, start=1)
            if f.status in COLOURS for found in f.found if found.page == index and found.bbox]


def template_of(config: AppConfig, run: runs.Run) -> Template | None:
    """The run's template, where config.yaml still has it with the same fields (else its
    values can be shown but not checked again)."""
    return kept(config.templates, run.result.template, [f.name for f in run.result.fields])


def show_fields(runtime: Runtime, run: runs.Run, key: str, name: str, image, index: int) -> None:
    """The fields of ``run`` (of the document ``name``) beside page ``index`` (``image``, None
    where it was not kept), and their sheet to download, corrections included."""
    fields = run.result.fields
    template = template_of(runtime.config, run)
    if failed := st.session_state.pop(SAVE_FAILED, None):
        st.error(failed)
    if template is None:
        st.warning(t("The template '{template}' is no longer in config.yaml as it was, so these values cannot "
                     "be corrected here.", template=run.result.template or "-"))
    else:
        st.caption(t("Template: {template}. Correct a value in the table; it is checked again and kept in the "
                     "history with the value read.", template=local(template.label)))
    if run.history_id is None:
        st.caption(t("This run is not in the history, so corrections last only while this page is open."))
    picture, table = st.columns([2, 3]) if image is not None else (None, st.container())
    if picture is not None:
        shown = marks(fields, index)
        picture.image(render.marked(image, shown), width="stretch",
                      caption=tn("{n} value on this page", "{n} values on this page", len(shown)))
    version = st.session_state.setdefault(f"fields_version_{key}", 0)
    frame = fields_frame(template, fields)
    edited = table.data_editor(
        frame, key=f"fields_{key}_{version}", num_rows="fixed", width="stretch",
        disabled=True if template is None else ["field", "status", "page", "read"],
        column_config={"_index": st.column_config.Column("#"),
                       "field": st.column_config.TextColumn(t("Field")),
                       "value": st.column_config.TextColumn(t("Value"), width="medium"),
                       "status": st.column_config.TextColumn(t("Status")),
                       "page": st.column_config.TextColumn(t("Page")),
                       "read": st.column_config.TextColumn(t("As read, before correction"))})
    if template is None:
        return
    changes = {f.name: value_of(template, f.name, edited.iloc[n]["value"]) for n, f in enumerate(fields)
               if (edited.iloc[n]["value"] or "").strip() != frame.iloc[n]["value"].strip()}
    with table:
        changes.update(conflict_choices(template, fields, f"{key}_{version}"))
    if changes:
        keep_corrections(runtime, run, template, changes)
        st.session_state[f"fields_version_{key}"] = version + 1  # a new editor, without the edits applied
        st.rerun()
    with table:
        sheet_downloads([(name, run.result)], template, f"{Path(name).stem or 'document'}.fields", key,
                        lambda fmt: t("Fields .{format}", format=fmt))


def conflict_choices(template: Template, fields: list[FieldResult], key: str) -> dict[str, Value]:
    """For each conflict, its values with their pages, to choose one (another is typed in the
    table): the field's name → the value chosen."""
    chosen = {}
    for f in fields:
        if f.status != "conflict":
            continue
        values: dict[str, tuple[Value, list[int]]] = {}
        for found in f.found:
            values.setdefault(as_text(found.value), (found.value, []))[1].append(found.page + 1)
        options = list(values)
        names = {o: tn("{value} (page {pages})", "{value} (pages {pages})", len(values[o][1]), value=o,
                       pages=", ".join(map(str, sorted(set(values[o][1]))))) for o in options}
        pick = st.selectbox(t("{field}: the pages disagree; choose the right value, or type another in the table",
                              field=local(template.field(f.name).label)), options, index=None, format_func=names.get,
                            placeholder=t("Choose a value"), key=f"conflict_{key}_{f.name}")
        if pick is not None:
            chosen[f.name] = values[pick][0]
    return chosen


def keep_corrections(runtime: Runtime, run: runs.Run, template: Template, changes: dict[str, Value | None]) -> None:
    """Each change checked again (an account again with a corrected BIK). A run in the history
    is corrected there, on the fields as kept, and shows them as they are then — other
    sessions' corrections included; one that is not, or whose history fails, here alone."""
    if run.history_id is not None:
        try:
            run.result.fields = runtime.history.correct_fields(run.history_id, changes)
            return
        except ChatVLMError as exc:
            st.session_state[SAVE_FAILED] = said(exc)
    fields = run.result.fields
    for name, value in changes.items():
        fields = correct(template, fields, name, value)
    run.result.fields = fields


def fields_sheet(config: AppConfig, results: dict[str, runs.Run], documents: dict[str, Document]) -> None:
    """The documents read with the fields task in one sheet, a row each, and its downloads.
    Where runs of several templates are on the page, the sheet is the first one's."""
    read = [(documents[f].name, run.result) for f, run in results.items() if run.result.task == FIELDS]
    if len(read) < 2:
        return
    key = read[0][1].template
    try:
        template = config.template(key)
    except ConfigError as exc:
        st.error(said(exc))
        return
    rows = [(name, result) for name, result in read if result.template == key]
    st.divider()
    st.subheader(tn("{template}: {n} document", "{template}: {n} documents", len(rows),
                    template=local(template.label)))
    try:
        # The table downloaded as xlsx, read back: what is shown is what is downloaded.
        sheet = pd.read_excel(io.BytesIO(sheet_bytes(rows, template, "xlsx")), dtype=str).fillna("")
    except ChatVLMError as exc:
        st.error(said(exc))
        return
    st.dataframe(sheet, hide_index=True)
    sheet_downloads(rows, template, key, "all", lambda fmt: t("Sheet .{format}", format=fmt))


def sheet_downloads(rows: list[tuple[str, OCRResult]], template: Template, stem: str, key: str,
                    label: Callable[[str], str]) -> None:
    """The documents' sheet as xlsx, csv and json, each made when its button is clicked."""
    columns = st.columns(len(SHEET_FORMATS))
    for n, (fmt, mime) in enumerate(SHEET_FORMATS.items()):
        columns[n].download_button(label(fmt), partial(sheet_bytes, rows, template, fmt, language()),
                                   file_name=f"{stem}.{fmt}", mime=mime, key=f"dl_sheet_{key}_{fmt}")
