"""The result as an Excel workbook: each table on its own sheet ("p1 t1": page 1, table 1),
spanned cells merged, then a "Text" sheet with every line of every page.

A cell is stored as a number only when that loses nothing (models/numbers.py): "1.10" in a
Russian table stays the text "1.10", and "1 250 000,00" becomes 1250000.00 shown with the
number format "#,##0.00", its decimals and grouping kept. Everything else is text as written.
"""

from __future__ import annotations

import io

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.worksheet.worksheet import Worksheet

from models import numbers, tables
from models.result import OCRResult


def export(result: OCRResult) -> bytes:
    book = Workbook()
    book.remove(book.active)
    texts = {page.index: page.text for page in result.pages}
    for found in tables.of_result(result):
        sheet = book.create_sheet(found.name)
        way = numbers.convention((cell for row in found.table.cells for cell in row), texts[found.page])
        for r, row in enumerate(found.table.cells, start=1):
            for c, text in enumerate(row, start=1):
                if text:
                    _put(sheet, r, c, text, way)
        for m in found.table.merges:
            sheet.merge_cells(start_row=m.row + 1, start_column=m.col + 1,
                              end_row=m.row + m.rows, end_column=m.col + m.cols)
    lines = book.create_sheet("Text")
    lines.append(["Page", "Text"])
    read = ((page.number, line) for page in result.pages for line in page.text.splitlines() if line.strip())
    for r, (number, line) in enumerate(read, start=2):
        lines.cell(r, 1, number)
        text_cell(lines.cell(r, 2), line)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def _put(sheet: Worksheet, row: int, column: int, text: str, way: numbers.Convention) -> None:
    cell = sheet.cell(row, column)
    if (value := numbers.number(text, way)) is not None:
        cell.value, cell.number_format = value.value, value.format
    else:
        text_cell(cell, text)


def text_cell(cell: Cell, text: str) -> None:
    """``text`` in ``cell`` as text, as written."""
    # Control characters make the file unreadable to Excel, and openpyxl would store read
    # text that starts with "=" as a formula.
    cell.value = ILLEGAL_CHARACTERS_RE.sub("", text)
    cell.data_type = "s"
