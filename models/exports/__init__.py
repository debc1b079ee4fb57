"""A result as files people work with: its tables as CSV and Excel, the document as Word, and
the pages as a searchable PDF. The one implementation the app and ``cli.py ocr --format`` use.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models import render, tables
from models.errors import ChatVLMError, ExportError, NothingToExport
from models.i18n import _
from models.exports import csv_files, searchable_pdf, word, workbook
from models.result import OCRResult

PageImage = Callable[[int], Image.Image]
"""A page's index → that page's image, in the pixels the result's boxes are in (or scaled)."""

MIME = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pdf": "application/pdf",
}
FORMATS = ("csv", *MIME)
ALL_FORMATS = (*render.FORMATS, *FORMATS)  # txt, md, json as text; the rest as files


@dataclass(frozen=True)
class File:
    name: str
    data: bytes
    mime: str


def export(result: OCRResult, fmt: str, document_name: str, page_image: PageImage, lang: str = "en") -> File:
    """The result in ``fmt``, named after the document; what it says itself (a page that was not
    read) in ``lang``. Raises NothingToExport for CSV of a result without tables.
    ``page_image`` is called for the PDF's pages and for the pictures of Word's."""
    stem = Path(document_name).stem or "document"
    if fmt == "csv":
        found = tables.of_result(result)
        if not found:
            raise NothingToExport(_("No tables were found, so no CSV was written."))
        if len(found) == 1:
            return File(f"{stem}.csv", csv_files.table_csv(found[0]), "text/csv")
        return File(f"{stem}.csv.zip", csv_files.zipped(found, stem), "application/zip")
    mime = MIME[fmt]
    if fmt == "xlsx":
        data = workbook.export(result)
    elif fmt == "docx":
        data = word.export(result, page_image, lang)
    else:
        data = searchable_pdf.export(result, page_image)
    return File(f"{stem}.{fmt}", data, mime)


def file_for(result: OCRResult, fmt: str, document_name: str, page_image: PageImage,
             lang: str = "en") -> File:
    """The result in any format, text ones included (see ``export`` for the rest). Raises
    ExportError when the file cannot be made, so that one document's failure fails it alone."""
    try:
        if fmt in render.FORMATS:
            return File(render.output_name(document_name, fmt), render.render(result, fmt, lang).encode("utf-8"),
                        render.FORMATS[fmt])
        return export(result, fmt, document_name, page_image, lang)
    except ChatVLMError:
        raise
    except Exception as exc:  # a fault in one document's file must not cost the others theirs
        raise ExportError(_("'{name}' could not be written as {format} ({reason}); the other documents "
                            "are not affected.", name=document_name, format=fmt,
                            reason=(type(exc).__name__ + ": " + str(exc))[:300])) from exc


def unique_stems(names: list[str]) -> list[str]:
    """Each name's stem, a later one that an earlier one took made "a (2)": a.png and a.pdf,
    or two folders' x.png, must not overwrite each other."""
    stems: list[str] = []
    for name in names:
        stem = candidate = Path(name).stem or "document"
        n = 1
        while candidate in stems:
            n += 1
            candidate = f"{stem} ({n})"
        stems.append(candidate)
    return stems


def bundle(results: list[tuple[str, OCRResult, PageImage]], fmt: str, lang: str = "en") -> bytes:
    """One ZIP with each document's result in ``fmt``; a document without tables has no CSV,
    and one whose file cannot be made has ``NAME.error.txt`` saying why instead."""
    buf = io.BytesIO()
    names = [name for name, _, _ in results]
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for (name, result, page_image), stem in zip(results, unique_stems(names)):
            try:
                made = file_for(result, fmt, stem + Path(name).suffix, page_image, lang)
            except NothingToExport:
                continue
            except ChatVLMError as exc:
                archive.writestr(f"{stem}.error.txt", exc.message.render(lang) + "\n")
                continue
            archive.writestr(made.name, made.data)
    return buf.getvalue()
