"""A job's result as a file: the export formats of the app and ``cli.py ocr``.

Only the documents with a page read count, so a cancelled or failed job gives the pages it
read. One document gives its file; several give the text formats joined (JSON: a list) and
the file formats as one ZIP, as ``cli.py ocr`` prints them and the app's download bundles
them (models/outputs.py, models/exports). A fields job's xlsx and csv are the one sheet of
its documents' fields, its txt and md list the fields before the text, as ``cli.py ocr
--task fields`` writes them. Page images for the PDF and Word exports are the pages as they
were read: the prepared page where preparation turned or straightened it (kept with the
job), else the document's own, opened again from the job's stored bytes.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from managers.jobs.service import Jobs
from managers.jobs.store import Job
from models import exports, outputs, render
from models.config import AppConfig
from models.document import open_document, png_image
from models.errors import ConfigError, NothingToExport
from models.fields import sheet
from models.i18n import _
from models.result import OCRResult

ALL_FORMATS = exports.ALL_FORMATS
SHEETS = ("xlsx", "csv")


@dataclass(frozen=True)
class Made:
    name: str
    data: bytes
    mime: str

    @property
    def quoted_name(self) -> str:
        return quote(self.name)


def check_format(fmt: str) -> None:
    if fmt not in ALL_FORMATS:
        raise ConfigError(_("There is no format '{format}'; the formats are: {known}.",
                            format=fmt, known=", ".join(ALL_FORMATS)))


def result_file(config: AppConfig, jobs: Jobs, job: Job, results: list[tuple[str, OCRResult]], fmt: str,
                lang: str) -> Made:
    check_format(fmt)
    read = [(document, name, result) for document, (name, result) in zip(job.documents, results) if result.pages]
    if not read:
        raise NothingToExport(_("No page of this job has been read yet, so there is nothing to download; "
                                "follow the job until its pages are read."))
    if job.spec.template and fmt in SHEETS:
        with_fields = [(name, result) for _document, name, result in read if result.fields]
        if not with_fields:
            raise NothingToExport(_("No document of this job was read to its end, so there are no fields to put "
                                    "in a sheet; download it as txt, md or json for the pages read."))
        data = sheet.sheet_bytes(with_fields, config.template(job.spec.template), fmt, lang)
        return Made(f"fields.{fmt}", data, exports.MIME.get(fmt, "text/csv"))
    if len(read) > 1 and fmt in render.FORMATS:
        data = outputs.joined([result for _document, _name, result in read], fmt, config.templates, lang)
        return Made(f"{job.id}.{fmt}", data.encode("utf-8"), render.FORMATS[fmt])
    if len(read) > 1:
        data = exports.bundle([(name, result, _pages(config, jobs, job, document.n, name))
                               for document, name, result in read], fmt, lang)
        if not zipfile.ZipFile(io.BytesIO(data)).namelist():
            raise NothingToExport(_("No document of this job has tables, so no CSV was written."))
        return Made(f"{job.id}.{fmt}.zip", data, "application/zip")
    (document, name, result), = read
    made = outputs.file_for(result, fmt, name, _pages(config, jobs, job, document.n, name), config.templates, lang)
    return Made(made.name, made.data, made.mime)


def _pages(config: AppConfig, jobs: Jobs, job: Job, n: int, name: str) -> exports.PageImage:
    prepared = jobs.store.prepared(job.id, n)

    @lru_cache(maxsize=1)
    def document():
        return open_document(jobs.store.document(job.id, n), name, config.limits)

    return lambda index: png_image(prepared[index]) if index in prepared else document().page(index).image
