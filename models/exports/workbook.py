"""The result as an Excel workbook: each table on its own sheet ("p1 t1": page 1, table 1),
numbers stored as numbers and spanned cells merged, then a "Text" sheet with every line."""

from __future__ import annotations

import io
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell

from models import tables
from models.result import OCRResult


def export(result: OCRResult) -> bytes:
    book = Workbook()
    book.remove(book.active)
    for table in tables.of_result(result):
        sheet = book.create_sheet(table.name)
        for r, row in enumerate(table.rows, start=1):
            for c, value in enumerate(row, start=1):
                if value != "":
                    _put(sheet.cell(r, c), value)
        for m in table.merges:
            sheet.merge_cells(start_row=m.row + 1, start_column=m.col + 1,
                              end_row=m.row + m.rows, end_column=m.col + m.cols)
    text = book.create_sheet("Text")
    text.append(["Page", "Text"])
    lines = [(page.number, line) for page in result.pages for line in page.text.splitlines() if line.strip()]
    for r, (number, line) in enumerate(lines, start=2):
        _put(text.cell(r, 1), number)
        _put(text.cell(r, 2), line)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _put(cell: Cell, value: str | int | Decimal) -> None:
    if isinstance(value, str):
        # Control characters make the file unreadable to Excel, and openpyxl would store
        # read text that starts with "=" as a formula.
        cell.value = ILLEGAL_CHARACTERS_RE.sub("", value)
        cell.data_type = "s"
    else:
        cell.value = value
