"""A page's answer → typed blocks (models/elements.py), once, where the answer is parsed.

- A Markdown answer (or a layout cell's Markdown text) is read with markdown-it: headings,
  paragraphs, lists, pipe tables, HTML blocks (their tables on a grid, their other blocks as
  text), code, and ``$$ … $$`` formulas. Inline markup goes; what a link or an image points
  to stays as text, so nothing from an answer is ever followed or loaded.
- A plain-text answer is paragraphs split at blank lines, as written.
- A dots.ocr layout is one block per cell by its category; tables are parsed from the cell's
  HTML, pictures are boxes on the page.
- Tesseract's lines are paragraphs with their boxes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import lxml.etree
import lxml.html

from models import tables
from models.elements import (Box, Code, Element, Formula, Heading, ListBlock, ListItem, Paragraph,
                             Picture, Role)
from models.i18n import Message

HEADINGS = {f"h{n}": n for n in range(1, 7)}
# HTML elements that only group others: their children are read one by one.
CONTAINERS = {"body", "div", "section", "article", "main", "header", "footer", "blockquote"}
HTML_BLOCKS = CONTAINERS | set(HEADINGS) | {"table", "p", "ul", "ol", "pre"}
ROLES: dict[str, Role] = {"Caption": "caption", "Footnote": "footnote", "Page-header": "header",
                          "Page-footer": "footer"}
HEADER_FOOTER = ("Page-header", "Page-footer")
FORMULA_FENCES = (("$$", "$$"), ("\\[", "\\]"))


class Cell(Protocol):
    """A layout cell as models/result.Block holds it."""

    bbox: Box
    category: str
    text: str


def from_text(text: str) -> list[Element]:
    """A plain answer: paragraphs split at blank lines, each as written."""
    paragraphs, lines = [], []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            lines.append(line.rstrip())
        elif lines:
            paragraphs.append(Paragraph(text="\n".join(lines)))
            lines = []
    return paragraphs


def from_lines(paragraphs: Sequence[Sequence[tuple[Box, str]]]) -> list[Element]:
    """OCR paragraphs, each a list of (line box, line text): one paragraph with its lines and
    the box around them."""
    found: list[Element] = []
    for lines in paragraphs:
        if lines:
            boxes = [box for box, _ in lines]
            found.append(Paragraph(text="\n".join(text for _, text in lines),
                                   bbox=(min(b[0] for b in boxes), min(b[1] for b in boxes),
                                         max(b[2] for b in boxes), max(b[3] for b in boxes))))
    return found


def from_markdown(text: str, bbox: Box | None = None) -> tuple[list[Element], list[Message]]:
    """Markdown (with HTML in it) as blocks; warnings say what was cut. A table or code inside
    a list item ends the list there and the list goes on after it, so each stays where it was."""
    tokens = tables.parse_markdown(text)
    found: list[Element] = []
    warnings: list[Message] = []
    depth, current, ordered, marker = 0, None, False, ""  # the list being read, how deep, its item's mark
    skip_to = -1
    for i, token in enumerate(tokens):
        if i < skip_to:
            continue
        before = tokens[i - 1] if i else None
        if token.type == "table_open":
            table, cut = tables.from_tokens(tokens, i)
            found.append(table.model_copy(update={"bbox": bbox}))
            warnings += cut
            skip_to = next(j for j in range(i, len(tokens)) if tokens[j].type == "table_close")
            current = None
        elif tables.is_html(token):
            blocks, cut = from_html(token.content, bbox)
            found += blocks
            warnings += cut
            current = None if blocks else current
        elif token.type in ("fence", "code_block"):
            if token.content.strip():
                found.append(Code(text=token.content.rstrip("\n"), bbox=bbox))
                current = None
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            if depth == 0:
                ordered, current = token.type == "ordered_list_open", None
            depth += 1
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
        elif token.type == "list_item_open":
            marker = token.info + token.markup  # "3." or "-"
        elif token.type == "inline" and before is not None and before.type == "heading_open":
            if heading := " ".join(tables.inline_text(token).split()):
                found.append(Heading(text=heading, level=HEADINGS.get(before.tag, 1), bbox=bbox))
                current = None
        elif token.type == "inline" and before is not None and before.type == "paragraph_open":
            if depth:
                if current is None:
                    current = ListBlock(items=[], ordered=ordered, bbox=bbox)
                    found.append(current)
                current.items.append(ListItem(text=tables.inline_text(token, "\n"), level=depth - 1, marker=marker))
                marker = ""  # a second paragraph of the same item has none
            elif latex := _formula(token.content):
                found.append(Formula(latex=latex, bbox=bbox))
            elif paragraph := tables.inline_text(token, "\n").strip():
                found.append(Paragraph(text=paragraph, bbox=bbox))
    return found, warnings


def _formula(source: str) -> str | None:
    """The LaTeX of a paragraph that is a display formula, ``$$ … $$`` or ``\\[ … \\]``."""
    text = source.strip()
    for opening, closing in FORMULA_FENCES:
        inside = text[len(opening):-len(closing)]
        if (len(text) > len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing)
                and opening not in inside and closing not in inside):  # one formula, not two with text between
            return inside.strip()
    return None


def from_html(html: str, bbox: Box | None = None) -> tuple[list[Element], list[Message]]:
    """An HTML block: tables on their grid, headings, lists and the rest as paragraphs of text,
    loose text between elements included. Nothing of it is kept as HTML."""
    try:
        body = lxml.html.document_fromstring(html).body
    except lxml.etree.ParserError:  # nothing but a comment or whitespace
        return [], []
    found: list[Element] = []
    warnings: list[Message] = []
    for element in _flow(body):
        if isinstance(element, str):
            if text := _lines(element):
                found.append(Paragraph(text=text, bbox=bbox))
            continue
        text = _lines(tables.text_of(element))
        if element.tag == "table":
            table, cut = tables.from_element(element)
            if table is not None:
                found.append(table.model_copy(update={"bbox": bbox}))
                warnings += cut
            elif text:  # cells without rows: still text
                found.append(Paragraph(text=text, bbox=bbox))
        elif element.tag in HEADINGS and text:
            found.append(Heading(text=" ".join(text.split()), level=HEADINGS[element.tag], bbox=bbox))
        elif element.tag in ("ul", "ol"):
            ordered = element.tag == "ol"
            items = [ListItem(text=item_text, marker=f"{n}." if ordered else "•")
                     for n, li in enumerate(element.iterchildren("li"), start=_start(element))
                     if (item_text := _lines(tables.text_of(li)))]
            if items:
                found.append(ListBlock(items=items, ordered=ordered, bbox=bbox))
        elif text and element.tag not in ("script", "style"):
            found.append(Paragraph(text=text, bbox=bbox))
    return found, warnings


def _lines(text: str) -> str:
    """Text with each line's spaces folded and empty lines gone."""
    return "\n".join(line for line in (" ".join(part.split()) for part in text.splitlines()) if line)


def _start(ol: lxml.html.HtmlElement) -> int:
    try:
        return int(ol.get("start", "1"))
    except ValueError:
        return 1


def _flow(element: lxml.html.HtmlElement) -> Iterator[lxml.html.HtmlElement | str]:
    """The block elements under ``element`` in document order, and the loose text between
    them; a container of blocks is opened, one holding only text (``<div>Итого: 5</div>``) is
    a paragraph itself."""
    if element.text and element.text.strip():
        yield element.text
    for child in element.iterchildren():
        if not isinstance(child.tag, str):  # a comment
            pass
        elif child.tag in CONTAINERS and any(grand.tag in HTML_BLOCKS for grand in child):
            yield from _flow(child)
        else:
            yield child
        if child.tail and child.tail.strip():
            yield child.tail


def from_layout(cells: Sequence[Cell], hide_header_footer: bool = False) -> tuple[list[Element], list[Message]]:
    """dots.ocr's cells in reading order, each by its category; consecutive list items make one
    list."""
    found: list[Element] = []
    warnings: list[Message] = []
    for cell in cells:
        if hide_header_footer and cell.category in HEADER_FOOTER:
            continue
        box = tuple(cell.bbox)
        if cell.category == "Picture":
            if box[2] > box[0] and box[3] > box[1]:
                found.append(Picture(bbox=box))
            continue
        if cell.category == "Formula":
            if latex := (_formula(cell.text) or cell.text.strip()):
                found.append(Formula(latex=latex, bbox=box))
            continue
        blocks, cut = (from_html(cell.text, box) if cell.category == "Table" and "<table" in cell.text.lower()
                       else from_markdown(cell.text, box))
        warnings += cut
        if cell.category in ("Title", "Section-header"):
            text = " ".join(" ".join(_plain(block).split()) for block in blocks)
            if text:
                found.append(Heading(text=text, level=1 if cell.category == "Title" else 2, bbox=box))
        elif cell.category == "List-item":
            items = [item for block in blocks for item in
                     (block.items if isinstance(block, ListBlock) else [ListItem(text=_plain(block))])]
            ordered = any(isinstance(block, ListBlock) and block.ordered for block in blocks)
            if found and isinstance(found[-1], ListBlock) and found[-1].ordered == ordered and found[-1].bbox:
                previous = found[-1]
                found[-1] = previous.model_copy(update={"items": previous.items + items,
                                                        "bbox": _union(previous.bbox, box)})
            elif items:
                found.append(ListBlock(items=items, ordered=ordered, bbox=box))
        else:
            role = ROLES.get(cell.category, "body")
            found += [block.model_copy(update={"role": role}) if isinstance(block, Paragraph) else block
                      for block in blocks]
    return found, warnings


def _plain(block: Element) -> str:
    if isinstance(block, ListBlock):
        return "\n".join(item.text for item in block.items)
    if isinstance(block, tables.Table):
        return "\n".join(" ".join(c for c in row if c) for row in block.cells)
    return getattr(block, "text", "") or getattr(block, "latex", "")


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
