"""Many documents read with one template → one sheet: a row per document (its file name
first; a later file of the same name, from another folder, as "invoice (2).png"), and per
template field its value as printed, then its check ("valid", "invalid: the INN's check
digits do not match", "missing: …", "conflict: …"). The app's download and
``cli.py ocr --task fields --format xlsx|csv|json`` both write it with ``sheet_bytes``.

- A value is the text the document prints, never retyped: an INN, a KPP or an account as a
  spreadsheet number would lose its leading zeros or its last digits. A conflict's values are
  written side by side, each with its pages ("7707083893 (page 1); 7707083894 (page 2)"), and a
  list's items joined with "; ".
- Sums, numbers and dates also get a column of their own with the checked, normalized form
  beside the printed one ("1 250 000,00 руб." → 1250000.00, "«20» декабря 2026 г." →
  2026-12-20): in the workbook a number or date cell people can add up and sort, and only
  where that loses nothing (models/numbers.py: at most 15 significant digits, else text); in
  the CSV the same form as text. The printed column stays, so nothing is lost either way.
- Headers and check words are in ``lang``, for the person who opens the sheet; the JSON, for
  programs, is keyed by field names and keeps status words in English (its reasons in ``lang``).
- The CSV is UTF-8 with a byte-order mark, comma-separated, as the tables' CSV
  (models/exports/csv_files.py): without the mark Excel reads Cyrillic as mojibake. As there,
  a cell that begins like a formula ("=", "+", "-", "@", a tab, a carriage return) gets a
  single quote before it, so that a spreadsheet opening the file never runs it: the phone
  "+7 495 …" is written "'+7 495 …". The workbook needs none: its cells are typed as text.

``listing`` gives one document's fields as a small table for its txt or md output.
"""

from __future__ import annotations

import datetime
import io
import json
from decimal import Decimal
from pathlib import PurePath
from typing import Literal

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill

from models import numbers, render
from models.elements import Heading, Table
from models.errors import ExportError
from models.exports import csv_files, unique_stems, workbook
from models.fields.result import FieldResult, as_text, status_text
from models.fields.template import Template, TemplateField
from models.i18n import Message, _, n_
from models.result import OCRResult

Format = Literal["xlsx", "csv", "json"]
TYPED = ("integer", "number", "money", "date")
# How a check's cell is shaded in the workbook, so that what needs a person stands out.
STATUS_FILLS = {"invalid": "FFC7CE", "conflict": "FFEB9C", "missing": "EDEDED"}


def sheet_bytes(documents: list[tuple[str, OCRResult]], template: Template, fmt: Format,
                lang: str = "en") -> bytes:
    """The documents (file name, its run with ``template``'s fields) as one sheet in ``fmt``.
    Raises ExportError naming a document that was not read with this template's fields."""
    if not documents:
        raise ExportError(_("There are no documents to put in a sheet."))
    for name, result in documents:
        _check_fields(name, result, template)
    named = list(zip(_unique([name for name, _result in documents]), (result for _name, result in documents)))
    if fmt == "json":
        return json.dumps([_record(name, result, lang) for name, result in named],
                          ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    header = _header(template, lang)
    rows = [_row(name, result, template, lang) for name, result in named]
    return _workbook(header, rows, lang) if fmt == "xlsx" else _csv(header, rows)


def listing(result: OCRResult, template: Template, fmt: Literal["txt", "md"], lang: str = "en") -> str:
    """One document's fields as a heading and a table (field, value, check) in txt or md."""
    by_name = {f.name: f for f in result.fields}
    cells = [[_("Field").render(lang), _("Value").render(lang), _("Check").render(lang)]]
    cells += [[f.label.render(lang), _printed(by_name[f.name], lang), _status(by_name[f.name], lang)]
              for f in template.fields if f.name in by_name]
    blocks = [Heading(text=template.label.render(lang)), Table(cells=cells)]
    return render.elements_text(blocks) if fmt == "txt" else render.elements_markdown(blocks)


def _unique(names: list[str]) -> list[str]:
    """The rows' names: two folders' invoice.png are "invoice.png" and "invoice (2).png", as
    ``cli.py ocr --out`` names their own files (models.exports.unique_stems)."""
    return [stem + PurePath(name).suffix for name, stem in zip(names, unique_stems(names))]


def _check_fields(name: str, result: OCRResult, template: Template) -> None:
    if not result.fields:
        raise ExportError(_("'{name}' was not read with the fields task, so it has no fields to put in a "
                            "sheet; read it with the task Fields and a template.", name=name))
    if {f.name for f in result.fields} != {f.name for f in template.fields}:
        raise ExportError(_("'{name}' was read with the template {used}, not this one; put the documents "
                            "of one template in a sheet.", name=name, used=result.template or "?"))


# --- the cells ------------------------------------------------------------------------------

def _printed(result: FieldResult, lang: str) -> str:
    """The value as printed; a conflict's values each with the pages it was found on."""
    if result.status != "conflict":
        return as_text(result.value)
    pages: dict[str, set[int]] = {}
    for found in result.found:
        pages.setdefault(as_text(found.value), set()).add(found.page + 1)
    return "; ".join(n_("{value} (page {pages})", "{value} (pages {pages})", len(on),
                        value=value, pages=", ".join(str(p) for p in sorted(on))).render(lang)
                     for value, on in pages.items())


def _status(result: FieldResult, lang: str) -> str:
    text = status_text(result)
    if result.corrected:
        text = _("{status}; corrected by hand, read as: {original}", status=text,
                 original=as_text(result.original) if result.original is not None else "—")
    return text.render(lang)


def _typed(field: TemplateField, result: FieldResult) -> object:
    """The checked form of a sum or a date, as a workbook keeps it: a Decimal or a date, or
    the normalized text where a spreadsheet number would lose digits; None where it did not check."""
    if result.status != "valid" or result.normalized is None:
        return None
    if field.type == "date":  # "2026-12-20", or "2026-12-20T10:00" where a time was printed
        moment = datetime.datetime.fromisoformat(result.normalized)
        return moment if "T" in result.normalized else moment.date()
    value = Decimal(result.normalized)
    return value if len(value.as_tuple().digits) <= numbers.EXCEL_DIGITS else result.normalized


def _header(template: Template, lang: str) -> list[str]:
    header = [_("Document").render(lang)]
    for f in template.fields:
        label = f.label.render(lang)
        header.append(label)
        if f.type in TYPED:
            header.append((_("{label}: as a date", label=label) if f.type == "date"
                           else _("{label}: as a number", label=label)).render(lang))
        header.append(_("{label}: check", label=label).render(lang))
    return header + [_("Pages not read").render(lang)]


def _row(name: str, result: OCRResult, template: Template, lang: str) -> list[tuple[object, str | None]]:
    """The row's cells, each with its status where it is a check's cell (for its shade)."""
    by_name = {f.name: f for f in result.fields}
    row: list[tuple[object, str | None]] = [(name, None)]
    for f in template.fields:
        found = by_name[f.name]
        row.append((_printed(found, lang), None))
        if f.type in TYPED:
            row.append((_typed(f, found), None))
        row.append((_status(found, lang), found.status))
    return row + [(", ".join(str(p.number) for p in result.failed), None)]


def _csv(header: list[str], rows: list[list[tuple[object, str | None]]]) -> bytes:
    return csv_files.csv_bytes([header, *([_csv_cell(value) for value, _status in row] for row in rows)])


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, datetime.date) else str(value)


def _workbook(header: list[str], rows: list[list[tuple[object, str | None]]], lang: str) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = _("Fields").render(lang)
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for r, row in enumerate(rows, start=2):
        for c, (value, status) in enumerate(row, start=1):
            cell = sheet.cell(r, c)
            if isinstance(value, Decimal):
                cell.value = value
                places = -value.as_tuple().exponent
                cell.number_format = "#,##0" + ("." + "0" * places if places > 0 else "")
            elif isinstance(value, datetime.date):  # a datetime too: a time printed with the date
                shape = "DD.MM.YYYY" if lang == "ru" else "YYYY-MM-DD"
                timed = isinstance(value, datetime.datetime)
                cell.value, cell.number_format = value, shape + (" HH:MM" if timed else "")
            elif value:
                workbook.text_cell(cell, str(value))
            if status in STATUS_FILLS:
                cell.fill = PatternFill("solid", fgColor=STATUS_FILLS[status])
    sheet.freeze_panes = "B2"  # the header and the document's name stay in view
    for column in sheet.columns:
        widest = max(len(str(cell.value or "")) for cell in column)
        sheet.column_dimensions[column[0].column_letter].width = min(60, max(10, widest + 2))
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _record(name: str, result: OCRResult, lang: str) -> dict:
    return {"document": name, "template": result.template,
            "fields": {f.name: _field_record(f, lang) for f in result.fields},
            "pages_not_read": [p.number for p in result.failed]}


def _field_record(result: FieldResult, lang: str) -> dict:
    reason: Message | None = result.reason
    return {"value": result.value, "normalized": result.normalized, "status": result.status,
            "reason": reason.render(lang) if reason else None,
            "found": [{"value": v.value, "page": v.page + 1} for v in result.found],
            "corrected": result.corrected, "original": result.original}
