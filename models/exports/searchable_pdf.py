"""The result as a searchable PDF: each page's image with the read text laid over it,
invisible (render mode 3), so a PDF viewer finds, selects and copies the text where it is
seen — what ocrmypdf makes of a scan.

What is placed where comes from the page's structure: a layout page's elements each in its
box (a table by its rows, a list by its items); Tesseract's lines each in its own box; a plain
answer's text over the whole page. Each
box's lines are placed top to bottom inside it, one line per equal share of the box's height,
with the font size that fills that share and the line stretched horizontally to the box's
width, as ocrmypdf's hOCR renderer does. The font is the DejaVu
Sans shipped beside this package (PDF's built-in fonts have no Cyrillic, and the GPU
machine has no system fonts).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from models.errors import ChatVLMError
from models.elements import Box, Element
from models.result import OCRResult, PageResult

FONT = Path(__file__).resolve().parent.parent / "fonts" / "DejaVuSans.ttf"
DPI = 200  # result pixels are pages at the intake's PDF resolution: an A4 scan stays A4
A4 = (1654, 2339)  # in pixels at DPI, for a page whose image and size are both unknown
POINTS = 72 / DPI


def export(result: OCRResult, page_image: Callable[[int], Image.Image]) -> bytes:
    # Imported here: pymupdf takes most of a second to import, which every cli.py command and
    # server start would otherwise pay for an export few of them make.
    import pymupdf

    pdf = pymupdf.open()
    font = pymupdf.Font(fontfile=str(FONT))
    for page in result.pages:
        try:
            image = page_image(page.index)
        except ChatVLMError:  # a page that cannot be decoded stays a page, blank
            image = None
        if page.width and page.height:
            width, height = page.width, page.height
        else:  # a page that failed before its size was known
            width, height = image.size if image else A4
        out = pdf.new_page(width=width * POINTS, height=height * POINTS)
        if image is not None:
            out.insert_image(out.rect, stream=_jpeg(image))
        if not page.error:
            _text_layer(out, page, font)
    pdf.subset_fonts()
    return pdf.tobytes(garbage=3, deflate=True)


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _text_layer(out: pymupdf.Page, page: PageResult, font: pymupdf.Font) -> None:
    import pymupdf

    em = font.ascender - font.descender  # a line's height per point of font size
    for box, lines in _placed(page):
        x1, y1, x2, y2 = (v * POINTS for v in box)
        lines = [line.strip() for line in lines if line.strip()]
        if not lines or x2 <= x1 or y2 <= y1:
            continue
        lines = _wrap(lines, font, (x2 - x1) / ((y2 - y1) / em))
        share = (y2 - y1) / len(lines)
        size = share / em
        for n, line in enumerate(lines):
            length = font.text_length(line, fontsize=size)
            if length <= 0:
                continue
            baseline = pymupdf.Point(x1, y1 + n * share + font.ascender * size)
            out.insert_text(baseline, line, fontsize=size, fontname="dejavu", fontfile=str(FONT),
                            render_mode=3, morph=(baseline, pymupdf.Matrix((x2 - x1) / length, 1)))


def _wrap(lines: list[str], font: pymupdf.Font, aspect: float) -> list[str]:
    """A layout model gives a paragraph as one line however many lines it covers on the page:
    split it into as many lines as the box holds when each line fills the box's width.
    ``aspect`` is the box's width over its height in ems. n lines of a text t ems long fill
    the box when t / n = aspect * n, so n = sqrt(t / aspect)."""
    text = " ".join(lines)
    ems = font.text_length(text, fontsize=1)
    count = max(1, round(math.sqrt(ems / aspect)))
    if count <= len(lines):
        return lines
    wrapped: list[list[str]] = [[]]
    done = 0.0
    for word in text.split():
        if wrapped[-1] and done >= len(wrapped) * ems / count:
            wrapped.append([])
        wrapped[-1].append(word)
        done += font.text_length(word + " ", fontsize=1)
    return [" ".join(words) for words in wrapped]


def _placed(page: PageResult) -> list[tuple[Box, list[str]]]:
    """Each box with the lines of text to place in it: the page's blocks where they hold its
    text line by line (Tesseract's lines, a text layer's) or where its elements have no boxes
    (a plain answer: one block over the page); else the elements in their boxes."""
    elements = [(element.bbox, _lines(element)) for element in page.elements if element.bbox]
    blocks = [(block.bbox, block.text.splitlines()) for block in page.blocks]
    if not elements or _text(blocks) == _text(elements):
        return blocks or [((0, 0, page.width, page.height), page.text.splitlines())]
    return elements


def _text(placed: list[tuple[Box, list[str]]]) -> list[str]:
    return [line.strip() for _, lines in placed for line in lines if line.strip()]


def _lines(element: Element) -> list[str]:
    if element.type == "table":
        return [" ".join(cell for cell in row if cell) for row in element.cells]
    if element.type == "list":
        return [item.text for item in element.items]
    if element.type == "formula":
        return element.latex.splitlines()
    return getattr(element, "text", "").splitlines()  # a picture has none
