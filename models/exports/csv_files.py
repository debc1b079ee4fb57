"""Tables as CSV: one file per table, a ZIP of them when there are several; ``csv_bytes`` is
also how the fields' sheet (models/fields/sheet.py) writes its CSV.

Every cell is the text as written ("1 250 000,00", "1.10", "007"): nothing is typed or
reformatted, so a program that reads the file decides what a value is — with one exception.
A cell that begins with "=", "+", "-", "@", a tab or a carriage return gets a single quote
before it ("'=HYPERLINK(…)", "'+7 495 …", "'-5"): Excel and LibreOffice run such a cell as a
formula when they open the file, and a formula in a scanned document could fetch a link or
leak the sheet's other cells (OWASP, "CSV Injection"). A program reading the file strips that
one leading quote. Comma-separated with a UTF-8 byte-order mark (without it Excel reads
Cyrillic as mojibake).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable

from models.tables import PageTable

# What a spreadsheet takes as the start of a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """A cell's text that no spreadsheet opens as a formula: quoted where it begins like one."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_bytes(rows: Iterable[Iterable[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows([inert(cell) for cell in row] for row in rows)
    return text.getvalue().encode("utf-8-sig")


def table_csv(found: PageTable) -> bytes:
    return csv_bytes(found.table.cells)


def zipped(found: list[PageTable], stem: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for table in found:
            archive.writestr(f"{stem}.p{table.page + 1}.t{table.number}.csv", table_csv(table))
    return buf.getvalue()
