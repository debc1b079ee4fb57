"""The result as a Word document in reading order: headings, paragraphs, lists, tables as
Word tables with their cells merged again, and pictures; a page break between pages.

What is rendered is each page's Markdown: a dots.ocr layout's Markdown already holds its
headings, its tables as HTML and its pictures as crops of the page (made when the page was
read), so a result reopened from its JSON gives the same document.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import lxml.etree
import lxml.html
from docx import Document
from docx.document import Document as WordDocument
from docx.shared import Emu, Inches
from docx.text.paragraph import Paragraph
from markdown_it.token import Token
from PIL import Image

from models import tables
from models.i18n import _
from models.result import OCRResult

DPI = 200  # pictures are crops of pages at the intake's PDF resolution: print them that size
HEADINGS = {f"h{n}": n for n in range(1, 7)}
# Elements that only group others: their children are rendered one by one.
CONTAINERS = {"body", "div", "section", "article", "main", "header", "footer", "blockquote"}
LISTS = {"ul": "List Bullet", "ol": "List Number", "bullet_list_open": "List Bullet",
         "ordered_list_open": "List Number"}
BLOCKS = CONTAINERS | set(HEADINGS) | {"table", "p", "ul", "ol", "pre"}


def export(result: OCRResult, lang: str = "en") -> bytes:
    doc = Document()
    for n, page in enumerate(result.pages):
        if n:
            doc.add_page_break()
        if page.error:
            doc.add_paragraph(_("Page {page} was not read: {error}", page=page.number, error=page.error).render(lang))
        else:
            _markdown(doc, page.markdown)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _markdown(doc: WordDocument, text: str) -> None:
    tokens = tables.parse_markdown(text)
    lists: list[str] = []
    for i, token in enumerate(tokens):
        before = tokens[i - 1].type if i else ""
        if token.type == "table_open":
            _table(doc, tables.from_tokens(tokens[i:]))  # its cells' tokens follow td_open: skipped below
        elif tables.is_html(token):
            _html(doc, token.content)
        elif token.type in ("fence", "code_block"):
            doc.add_paragraph(token.content.rstrip("\n"))
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            lists.append(LISTS[token.type])
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif token.type == "inline" and before == "heading_open":
            doc.add_heading(tables.inline_text(token), level=HEADINGS[tokens[i - 1].tag])
        elif token.type == "inline" and before == "paragraph_open":
            _runs(doc, doc.add_paragraph(style=_list_style(lists)), token)


def _list_style(lists: list[str]) -> str | None:
    """Word's built-in list styles go three levels deep ("List Bullet 3")."""
    if not lists:
        return None
    level = min(len(lists), 3)
    return lists[-1] + (f" {level}" if level > 1 else "")


def _runs(doc: WordDocument, paragraph: Paragraph, token: Token) -> None:
    bold = italic = False
    for child in token.children or []:
        if child.type in ("strong_open", "strong_close"):
            bold = child.type == "strong_open"
        elif child.type in ("em_open", "em_close"):
            italic = child.type == "em_open"
        elif child.type in ("text", "code_inline"):
            run = paragraph.add_run(child.content)
            run.bold, run.italic = bold, italic
        elif child.type == "softbreak":
            paragraph.add_run(" ")
        elif child.type == "hardbreak":
            paragraph.add_run().add_break()
        elif child.type == "image":
            _picture(doc, paragraph, str(child.attrs.get("src", "")))


def _picture(doc: WordDocument, paragraph: Paragraph, src: str) -> None:
    """A picture carried in the Markdown as a data URL; links elsewhere are not fetched."""
    head, _, payload = src.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        return
    try:
        picture = Image.open(io.BytesIO(base64.b64decode(payload)))
        picture.load()
    except (ValueError, OSError):  # a damaged picture costs the picture, not the document
        return
    png = io.BytesIO()
    picture.save(png, format="PNG")
    section = doc.sections[-1]
    room = section.page_width - section.left_margin - section.right_margin
    paragraph.add_run().add_picture(png, width=Emu(min(Inches(picture.width / DPI), room)))


def _table(doc: WordDocument, grid: tables.Grid) -> None:
    table = doc.add_table(rows=len(grid.cells), cols=len(grid.cells[0]))
    table.style = "Table Grid"
    for r, row in enumerate(grid.cells):
        for c, text in enumerate(row):
            if text:
                table.cell(r, c).text = text
    for m in grid.merges:
        first = table.cell(m.row, m.col)
        text = first.text
        first.merge(table.cell(m.row + m.rows - 1, m.col + m.cols - 1)).text = text


def _html(doc: WordDocument, html: str) -> None:
    try:
        body = lxml.html.document_fromstring(html).body
    except lxml.etree.ParserError:  # nothing but a comment or whitespace
        return
    for element in _flow(body):
        text = " ".join(element.text_content().split())
        if element.tag == "table":
            if grid := tables.from_element(element):
                _table(doc, grid)
        elif element.tag in HEADINGS:
            doc.add_heading(text, level=HEADINGS[element.tag])
        elif element.tag in LISTS:
            for item in element.iterchildren("li"):
                doc.add_paragraph(" ".join(item.text_content().split()), style=LISTS[element.tag])
        elif text:
            doc.add_paragraph(text)


def _flow(element: lxml.html.HtmlElement) -> Iterator[lxml.html.HtmlElement]:
    """The block elements under ``element`` in document order; a container of blocks is
    opened, one holding only text (``<div>Итого: 5</div>``) is a paragraph itself."""
    for child in element.iterchildren(tag=lxml.etree.Element):
        if child.tag in CONTAINERS and any(grand.tag in BLOCKS for grand in child):
            yield from _flow(child)
        else:
            yield child
