"""Tables as CSV: one file per table, a ZIP of them when there are several.

Comma-separated with a UTF-8 byte-order mark (without it Excel reads Cyrillic as mojibake);
numbers are written the way programs read them ("47300.50"), since CSV is for programs —
people who open tables in Excel get the xlsx.
"""

from __future__ import annotations

import csv
import io
import zipfile

from models.tables import Table


def table_csv(table: Table) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows(table.rows)
    return text.getvalue().encode("utf-8-sig")


def zipped(tables: list[Table], stem: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for table in tables:
            archive.writestr(f"{stem}.p{table.page + 1}.t{table.number}.csv", table_csv(table))
    return buf.getvalue()
