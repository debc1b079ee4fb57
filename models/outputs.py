"""A result as the output asked for, the same from ``cli.py`` and the API's result: a fields
run's txt or md lists its fields before its text, and several documents' text outputs are
joined into one (JSON: a list; txt: a form feed between them, as between pages).

The file formats (xlsx, docx, csv, pdf) are models/exports'; a fields run's one sheet of
many documents is models/fields/sheet.py's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from models import exports, render
from models.fields import sheet
from models.fields.template import Template
from models.result import OCRResult

DOCUMENT_SEPARATOR = {"txt": render.PAGE_BREAK, "md": "\n\n---\n\n"}


def text(result: OCRResult, fmt: str, templates: Mapping[str, Template], lang: str = "en") -> str:
    """The result as txt, md or json; a fields run's txt or md with its fields as a table first."""
    template = templates.get(result.template or "")
    if fmt in DOCUMENT_SEPARATOR and result.fields and template is not None:
        return sheet.listing(result, template, fmt, lang) + "\n\n" + render.render(result, fmt, lang)
    return render.render(result, fmt, lang)


def joined(results: list[OCRResult], fmt: str, templates: Mapping[str, Template], lang: str = "en") -> str:
    """Several documents' results as one text output (one document: its own)."""
    if fmt == "json":
        shown = [json.loads(render.json(result, lang)) for result in results]
        return json.dumps(shown[0] if len(shown) == 1 else shown, ensure_ascii=False, indent=2) + "\n"
    return DOCUMENT_SEPARATOR[fmt].join(text(result, fmt, templates, lang) for result in results) + "\n"


def file_for(result: OCRResult, fmt: str, document_name: str, page_image: exports.PageImage,
             templates: Mapping[str, Template], lang: str = "en") -> exports.File:
    """One document's output as a file named after it (see exports.file_for for what it raises)."""
    if fmt in DOCUMENT_SEPARATOR and result.fields:
        return exports.File(render.output_name(document_name, fmt),
                            text(result, fmt, templates, lang).encode("utf-8"), render.FORMATS[fmt])
    return exports.file_for(result, fmt, document_name, page_image, lang)
