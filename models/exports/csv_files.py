"""Tables as CSV: one file per table, a ZIP of them when there are several.

Every cell is the text as written ("1 250 000,00", "1.10", "007"): nothing is typed or
reformatted, so a program that reads the file decides what a value is. Comma-separated with a
UTF-8 byte-order mark (without it Excel reads Cyrillic as mojibake).
"""

from __future__ import annotations

import csv
import io
import zipfile

from models.tables import PageTable


def table_csv(found: PageTable) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows(found.table.cells)
    return text.getvalue().encode("utf-8-sig")


def zipped(found: list[PageTable], stem: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for table in found:
            archive.writestr(f"{stem}.p{table.page + 1}.t{table.number}.csv", table_csv(table))
    return buf.getvalue()
