"""A PDF page's own text, and whether it may stand in for reading the page.

A PDF can carry text of its own: born-digital text (exact, and free to read), but also a
page number or a header stamped by software onto a scan, or the invisible OCR layer an old
scanner wrote over its scan. Only the first may replace reading the page; the others would
return "стр. 1" for a page of ten lines, or someone else's misreadings.

The rule (``judge``), from facts PyMuPDF gives (``facts``):

1. The layer must cover what is printed. The rendered page's ink is cut into connected
   components; those of a glyph's size (``GLYPH_PT``: not rules, frames, dots or pictures)
   are counted, and so are the ones inside a line of the layer. Under ``MIN_COVER`` of them
   covered, the layer is a stamp, a header or a fragment: the page is read from its image.
   A born-digital page is covered almost entirely — what it prints beyond its text is
   bullets, icons, the letters of a logo or a seal — while a stamp or a header on a scanned
   page covers a few per cent. The bar errs towards reading: a page read that need not
   have been costs time, a layer used that does not cover the page loses text.
2. Text nobody sees is not the page's text as printed: invisible text (render mode 3, as OCR
   layers are written), fully transparent text, and text painted over by a later image. A
   layer mostly made of such text is an OCR layer of unknown quality, so it is kept only
   where a reading of the page agrees with it (``check``: Tesseract reads the page anyway
   and keeps the layer when the two are at least ``MIN_AGREEMENT`` alike, word order aside;
   a good commercial OCR layer is then kept as it is, a poor one gives way to the reading).
   Text outside the page is not extracted at all (PyMuPDF clips to the page).
3. Otherwise — visible text covering the page — the layer is read as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image
from rapidfuzz import fuzz

from models.i18n import Message, _

# At least this share of the page's glyph-sized marks must lie inside the layer's lines.
MIN_COVER = 0.8
# How alike an invisible OCR layer and a reading of the page must be (rapidfuzz's token sort
# ratio: character edits over both texts with words sorted, so column order does not count).
# Tesseract misreads ~1-5% of characters on a fair scan; a poor OCR layer differs far more.
MIN_AGREEMENT = 0.9
# A mark of ink is glyph-sized when its height and width (points) are in these ranges: a
# full stop or a hairline rule is lower, a frame or a picture larger.
GLYPH_PT = (2.0, 40.0)
GLYPH_MAX_WIDTH_PT = 150.0
# Pixels darker than this are ink.
INK = 128
# Lines of the layer are widened by this many points when their marks are counted.
PAD_PT = 2.0


@dataclass(frozen=True)
class TextSpan:
    """A line of a page's text, in page pixels; ``words``, where known, its words with
    their own boxes (a value found in the line is then boxed where it is printed)."""

    bbox: tuple[int, int, int, int]
    text: str
    words: tuple[TextSpan, ...] = ()


class Use(Enum):
    LAYER = "layer"  # visible text covering the page: read as it is
    CHECK = "check"  # an invisible OCR layer covering the page: kept where a reading agrees
    IMAGE = "image"  # read the page's image


@dataclass(frozen=True)
class Facts:
    visible_chars: int  # characters drawn visibly on the page
    hidden_chars: int  # invisible, transparent, or painted over by a later image
    glyphs: int  # glyph-sized marks of ink on the rendered page
    covered: int  # of those, the ones inside a line of the layer

    @property
    def cover(self) -> float:
        return self.covered / self.glyphs if self.glyphs else 1.0


@dataclass(frozen=True)
class Verdict:
    use: Use
    # Why a layer that is there is not read as it is; None when it is, or there is none.
    note: Message | None = None


def judge(facts: Facts, page: int) -> Verdict:
    """What page ``page`` (1-based) is read from, by the rule in the module's docstring."""
    if facts.visible_chars + facts.hidden_chars == 0:
        return Verdict(Use.IMAGE)
    if facts.cover < MIN_COVER:
        return Verdict(Use.IMAGE, _(
            "Page {page} has a text layer covering only a small part ({percent:.0f}%) of the text "
            "printed on it, such as a stamp or a header; it was read by OCR.", page=page, percent=100 * facts.cover))
    if facts.hidden_chars > facts.visible_chars:
        return Verdict(Use.CHECK)
    return Verdict(Use.LAYER)


def check(layer: str, reading: str, page: int) -> Verdict:
    """Whether page ``page``'s invisible OCR layer is kept (``Use.LAYER``) or the reading of
    the page (``Use.IMAGE``); the note says which and why, either way."""
    alike = fuzz.token_sort_ratio(layer, reading) / 100
    if alike >= MIN_AGREEMENT:
        return Verdict(Use.LAYER, _(
            "Page {page} was read from the PDF's invisible OCR text layer, which agrees with OCR "
            "({percent:.0f}% alike).", page=page, percent=100 * alike))
    return Verdict(Use.IMAGE, _(
        "Page {page} has an invisible OCR text layer that differs from what is printed "
        "({percent:.0f}% alike); it was read by OCR.", page=page, percent=100 * alike))


def text_of(paragraphs: list[list[TextSpan]]) -> str:
    return "\n\n".join("\n".join(span.text for span in para) for para in paragraphs)


def lines(pdf_page, scale: float) -> list[list[TextSpan]]:
    """The page's text as paragraphs of lines, boxes in pixels of ``scale`` per point of the
    page as shown (PyMuPDF gives them on the page before its /Rotate)."""
    import pymupdf

    shown = pdf_page.rotation_matrix * pymupdf.Matrix(scale, scale)

    def box(rect) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (round(v) for v in pymupdf.Rect(rect) * shown)
        return x0, y0, x1, y1

    paragraphs = []
    for block in pdf_page.get_text("rawdict")["blocks"]:
        found = []
        for line in block.get("lines", []):
            chars = [c for span in line["spans"] for c in span["chars"]]
            text = "".join(c["c"] for c in chars).strip()
            if text:
                found.append(TextSpan(box(line["bbox"]), text, _words(chars, box)))
        if found:
            paragraphs.append(found)
    return paragraphs


def _words(chars: list[dict], box) -> tuple[TextSpan, ...]:
    """A line's characters (PyMuPDF's rawdict) → its words, each with the box of its letters."""
    words, current = [], []
    for char in [*chars, None]:
        if char is not None and not char["c"].isspace():
            current.append(char)
        elif current:
            x0 = min(c["bbox"][0] for c in current)
            y0 = min(c["bbox"][1] for c in current)
            x1 = max(c["bbox"][2] for c in current)
            y1 = max(c["bbox"][3] for c in current)
            words.append(TextSpan(box((x0, y0, x1, y1)), "".join(c["c"] for c in current)))
            current = []
    return tuple(words)


def facts(pdf_page, paragraphs: list[list[TextSpan]], layer_scale: float, image: Image.Image) -> Facts:
    """The facts ``judge`` needs: characters from PyMuPDF's trace of the page's drawing,
    glyph-sized ink from ``image`` (the page rendered at ``image.width / page width`` pixels
    per point); ``paragraphs`` are the page's lines in pixels of ``layer_scale`` per point."""
    import cv2
    import pymupdf

    visible = hidden = 0
    items = pdf_page.get_bboxlog()  # everything drawn, in order: a span's seqno indexes it
    # An image's rectangle widened a hair, so text exactly at its edge counts as under it.
    images = [(i, pymupdf.Rect(rect) + (-1, -1, 1, 1)) for i, (kind, rect) in enumerate(items) if kind == "fill-image"]
    unrotated = pdf_page.rect * pdf_page.derotation_matrix  # where the trace's boxes are
    for span in pdf_page.get_texttrace():
        rect = unrotated & span["bbox"]
        if rect.is_empty:
            continue  # outside the page: not extracted, not shown
        chars = sum(1 for c in span["chars"] if not chr(c[0]).isspace())
        painted_over = any(i > span["seqno"] and rect in image_rect for i, image_rect in images)
        if span["type"] == 3 or span["opacity"] == 0 or painted_over:
            hidden += chars
        else:
            visible += chars
    scale = image.width / pdf_page.rect.width
    ink = (np.asarray(image.convert("L")) < INK).astype(np.uint8)
    _count, _labels, stats, centroids = cv2.connectedComponentsWithStats(ink, connectivity=8)
    low, high = (pt * scale for pt in GLYPH_PT)
    w, h = stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT]
    glyph = (h >= low) & (h <= high) & (w <= GLYPH_MAX_WIDTH_PT * scale)
    inside = np.zeros(ink.shape, dtype=bool)
    pad = PAD_PT * scale
    ratio = scale / layer_scale
    for span in (s for para in paragraphs for s in para):
        x0, y0, x1, y1 = span.bbox
        inside[max(0, int(y0 * ratio - pad)):max(0, int(y1 * ratio + pad) + 1),
               max(0, int(x0 * ratio - pad)):max(0, int(x1 * ratio + pad) + 1)] = True
    cx = np.clip(centroids[1:, 0].astype(int), 0, ink.shape[1] - 1)
    cy = np.clip(centroids[1:, 1].astype(int), 0, ink.shape[0] - 1)
    return Facts(visible, hidden, int(glyph.sum()), int((glyph & inside[cy, cx]).sum()))

