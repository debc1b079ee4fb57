"""A job's result as a file: the export formats of the app and ``cli.py ocr``.

One document gives its file; several give the text formats joined (JSON: a list) and the
file formats as one ZIP, as the app's download does. A fields job's xlsx and csv are the one
sheet of its documents' fields (models/fields/sheet.py). Page images for the PDF and Word
exports are the documents' own pages, opened again from the job's stored bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from managers.jobs.service import Jobs
from managers.jobs.store import Job
from models import exports, render
from models.config import AppConfig
from models.document import open_document
from models.errors import ConfigError
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


def result_file(config: AppConfig, jobs: Jobs, job: Job, results: list[tuple[str, OCRResult]], fmt: str,
                lang: str) -> Made:
    if fmt not in ALL_FORMATS:
        raise ConfigError(_("There is no format '{format}'; the formats are: {known}.",
                            format=fmt, known=", ".join(ALL_FORMATS)))
    if job.spec.template and fmt in SHEETS:
        data = sheet.sheet_bytes(results, config.template(job.spec.template), fmt, lang)
        return Made(f"fields.{fmt}", data, exports.MIME.get(fmt, "text/csv"))
    if len(results) > 1 and fmt in render.FORMATS:
        if fmt == "json":
            data = json.dumps([json.loads(render.json(result, lang)) for _, result in results], ensure_ascii=False,
                              indent=2)
        else:
            separator = render.PAGE_BREAK if fmt == "txt" else "\n\n---\n\n"
            data = separator.join(render.render(result, fmt, lang) for _, result in results)
        return Made(f"{job.id}.{fmt}", data.encode("utf-8"), render.FORMATS[fmt])
    pages = [_pages(config, jobs, job, document.n, document.name) for document in job.documents]
    if len(results) > 1:
        data = exports.bundle([(name, result, page) for (name, result), page in zip(results, pages)], fmt, lang)
        return Made(f"{job.id}.{fmt}.zip", data, "application/zip")
    (name, result), = results
    made = exports.file_for(result, fmt, name, pages[0], lang)
    return Made(made.name, made.data, made.mime)


def _pages(config: AppConfig, jobs: Jobs, job: Job, n: int, name: str):
    @lru_cache(maxsize=1)
    def document():
        return open_document(jobs.store.document(job.id, n), name, config.limits)

    return lambda index: document().page(index).image
