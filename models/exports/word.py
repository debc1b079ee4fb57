"""The result as a Word document in reading order, rendered from each page's elements
(models/elements.py): headings, paragraphs with their line breaks, lists in Word's list
styles, tables as Word tables with their cells merged again, formulas and code in a
monospace font, and pictures cropped from the page image by their boxes; a page break
between pages. Nothing is taken from a model's answer but text.

Tables are filled row by row: python-docx's ``table.cell(r, c)`` walks every cell of the
table on each call, which made a 200×8 table take half a minute.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import cache

from docx import Document
from docx.document import Document as WordDocument
from docx.shared import Emu, Inches
from PIL import Image

from models import layout
from models.elements import Box, Element, ListBlock, Table
from models.errors import ChatVLMError
from models.i18n import _
from models.result import OCRResult, PageResult

DPI = 200  # pictures are crops of pages at the intake's PDF resolution: print them that size
MONOSPACE = "Courier New"
LIST_STYLES = {False: "List Bullet", True: "List Number"}
DEEPEST_LIST = 3  # Word's built-in list styles go three levels deep ("List Bullet 3")


def export(result: OCRResult, page_image: Callable[[int], Image.Image], lang: str = "en") -> bytes:
    """``page_image`` gives a page's image for its pictures; it is called only for pages
    that have pictures."""
    doc = Document()
    for n, page in enumerate(result.pages):
        if n:
            doc.add_page_break()
        if page.error:
            doc.add_paragraph(_("Page {page} was not read: {error}", page=page.number, error=page.error).render(lang))
            continue
        picture = _cropper(page, page_image)
        for element in page.elements:
            _element(doc, element, picture)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _element(doc: WordDocument, element: Element, picture: Callable[[Box], Image.Image | None]) -> None:
    if element.type == "heading":
        doc.add_heading(element.text, level=element.level)
    elif element.type == "paragraph":
        doc.add_paragraph(element.text)  # a "\n" in a run's text becomes a line break
    elif element.type == "list":
        _list(doc, element)
    elif element.type == "table":
        _table(doc, element)
    elif element.type in ("formula", "code"):
        doc.add_paragraph().add_run(element.latex if element.type == "formula" else element.text).font.name = MONOSPACE
    elif element.type == "picture" and (crop := picture(element.bbox)) is not None:
        png = io.BytesIO()
        crop.save(png, format="PNG")
        section = doc.sections[-1]
        room = section.page_width - section.left_margin - section.right_margin
        doc.add_paragraph().add_run().add_picture(png, width=Emu(min(Inches(crop.width / DPI), room)))


def _cropper(page: PageResult, page_image: Callable[[int], Image.Image]) -> Callable[[Box], Image.Image | None]:
    """A picture's box → the page cut by it, within the page's picture budget (layout.Crops),
    the page image fetched once; a page whose image cannot be had loses its pictures, not the
    document."""
    @cache
    def crops() -> layout.Crops | None:
        try:
            return layout.Crops(page_image(page.index))
        except ChatVLMError:
            return None

    def crop(box: Box) -> Image.Image | None:
        if (page_crops := crops()) is None:
            return None
        # The image may be the page scaled (e.g. read smaller than its result size).
        whole = page_crops.image
        sx = whole.width / page.width if page.width else 1
        sy = whole.height / page.height if page.height else 1
        return page_crops.picture((round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)))
    return crop


def _list(doc: WordDocument, block: ListBlock) -> None:
    style = LIST_STYLES[block.ordered]
    for item in block.items:
        level = min(item.level, DEEPEST_LIST - 1)
        doc.add_paragraph(item.text, style=style + (f" {level + 1}" if level else ""))


def _table(doc: WordDocument, table: Table) -> None:
    if not table.cells:
        return
    word = doc.add_table(rows=len(table.cells), cols=table.width)
    word.style = "Table Grid"
    grid = []
    for row, texts in zip(word.rows, table.cells):
        cells = row.cells
        grid.append(cells)
        for cell, text in zip(cells, texts):
            if text:
                cell.text = text
    # Merges never overlap (tables.py lays them on one grid), so the cells found above stay
    # valid while others are merged; the covered cells are empty, so the first one's text stays.
    for m in table.merges:
        grid[m.row][m.col].merge(grid[m.row + m.rows - 1][m.col + m.cols - 1])

