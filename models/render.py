"""Renderers of the result contract: plain text, Markdown, JSON, and the page with its boxes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from models.elements import Box, Element, Table
from models.markdown import escape_line
from models.result import OCRResult, PageResult

PAGE_BREAK = "\f"  # plain-text pages are separated by a form feed, as pdftotext does

# One colour per dots.ocr layout category; Tesseract lines are "Text".
CATEGORY_COLOURS = {
    "Text": (31, 119, 180), "Title": (214, 39, 40), "Section-header": (255, 127, 14),
    "Table": (44, 160, 44), "Picture": (148, 103, 189), "Formula": (140, 86, 75),
    "Caption": (227, 119, 194), "Footnote": (127, 127, 127), "List-item": (188, 189, 34),
    "Page-header": (23, 190, 207), "Page-footer": (23, 190, 207),
}
OTHER_COLOUR = (0, 0, 0)
FORMATS = {"txt": "text/plain", "md": "text/markdown", "json": "application/json"}


def elements_text(elements: Sequence[Element]) -> str:
    """Plain text in reading order: a table's rows with its cells between tabs, a list's items
    one a line; pictures have no text."""
    parts = []
    for block in elements:
        if block.type == "table":
            parts.append("\n".join("\t".join(row).rstrip("\t") for row in block.cells))
        elif block.type == "list":
            parts.append("\n".join("  " * item.level + (f"{item.marker} " if item.marker else "") + item.text
                                   for item in block.items))
        elif block.type == "formula":
            parts.append(block.latex)
        elif block.type != "picture":
            parts.append(block.text)
    return "\n\n".join(part for part in parts if part.strip())


def elements_markdown(elements: Sequence[Element], picture: Callable[[Box], str | None] | None = None) -> str:
    """Markdown in reading order, every text escaped so it reads as written and nothing in it
    becomes a link, an image or HTML. ``picture`` gives a picture's image address (a crop of
    the page as a data URL), or None to leave it out."""
    parts = []
    for block in elements:
        if block.type == "heading":
            parts.append("#" * block.level + " " + escape_line(" ".join(block.text.split())))
        elif block.type == "paragraph":
            parts.append("  \n".join(escape_line(line) for line in block.text.splitlines()))
        elif block.type == "list":
            parts.append("\n".join("   " * item.level + _list_mark(block.ordered, item.marker)
                                   + escape_line(" ".join(item.text.split())) for item in block.items))
        elif block.type == "table" and block.cells:
            parts.append(_html_table(block) if block.merges else _pipe_table(block))
        elif block.type == "formula" and "$" not in block.latex and "\n\n" not in block.latex:
            parts.append(f"$$\n{block.latex}\n$$")
        elif block.type in ("formula", "code"):
            # a "$" or a blank line would end "$$ … $$" and let the rest be read as Markdown
            source = block.latex if block.type == "formula" else block.text
            fence = "`" * max(3, _longest_run(source, "`") + 1)
            parts.append(f"{fence}{'latex' if block.type == 'formula' else ''}\n{source}\n{fence}")
        elif block.type == "picture" and picture and (address := picture(block.bbox)):
            parts.append(f"![Picture]({address})")
    return "\n\n".join(part for part in parts if part.strip())


def _list_mark(ordered: bool, marker: str) -> str:
    """The item's own number where it had one ("3. "); Markdown numbers the rest from the first."""
    digits = marker.rstrip(".)")
    return f"{digits}. " if ordered and digits.isdigit() else ("1. " if ordered else "- ")


def _pipe_table(table: Table) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(escape_line(" ".join(cell.split())) for cell in cells) + " |"
    header, *rows = table.cells
    return "\n".join([row(header), "|" + " --- |" * table.width, *(row(r) for r in rows)])


def _html_table(table: Table) -> str:
    """A table with merged cells, which pipe tables cannot hold, as HTML built from escaped
    text only."""
    spans = {(m.row, m.col): m for m in table.merges}
    covered = {(m.row + dr, m.col + dc) for m in table.merges for dr in range(m.rows) for dc in range(m.cols)}
    lines = ["<table>"]
    for r, cells in enumerate(table.cells):
        tds = []
        for c, text in enumerate(cells):
            if (r, c) in spans:
                m = spans[(r, c)]
                attrs = (f' rowspan="{m.rows}"' if m.rows > 1 else "") + (f' colspan="{m.cols}"' if m.cols > 1 else "")
                tds.append(f"<td{attrs}>{_cell_html(text)}</td>")
            elif (r, c) not in covered:
                tds.append(f"<td>{_cell_html(text)}</td>")
        lines.append("<tr>" + "".join(tds) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _cell_html(text: str) -> str:
    # A blank line would end the HTML block in Markdown and let the rest be read as Markdown.
    return "<br>".join(escape(line) for line in text.splitlines() if line.strip())


def _longest_run(text: str, char: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == char else 0
        longest = max(longest, run)
    return longest


def page_text(page: PageResult) -> str:
    return page.text


def page_markdown(page: PageResult) -> str:
    return page.markdown


def page_json(page: PageResult, lang: str = "en") -> str:
    return page.model_dump_json(indent=2, context={"lang": lang})


def text(result: OCRResult) -> str:
    return PAGE_BREAK.join(p.text for p in result.pages)


def markdown(result: OCRResult) -> str:
    if len(result.pages) == 1:
        return result.pages[0].markdown
    return "\n\n---\n\n".join(f"<!-- page {p.number} -->\n\n{p.markdown}" for p in result.pages)


def json(result: OCRResult, lang: str = "en") -> str:
    """The result contract; its errors and warnings in ``lang``."""
    return result.model_dump_json(indent=2, context={"lang": lang})


DOCUMENT_RENDERERS = {"txt": text, "md": markdown, "json": json}
PAGE_RENDERERS = {"txt": page_text, "md": page_markdown, "json": page_json}


def render(result: OCRResult, fmt: str, lang: str = "en") -> str:
    return json(result, lang) if fmt == "json" else DOCUMENT_RENDERERS[fmt](result)


def output_name(document_name: str, fmt: str, page: PageResult | None = None) -> str:
    stem = Path(document_name).stem or "document"
    return f"{stem}.p{page.number}.{fmt}" if page else f"{stem}.{fmt}"


def overlay(image: Image.Image, page: PageResult) -> Image.Image:
    """The page with each block's box drawn in its category's colour and numbered in
    reading order; boxes are in original-page pixels, as the contract says."""
    return marked(image, [(str(n), block.bbox, CATEGORY_COLOURS.get(block.category, OTHER_COLOUR))
                          for n, block in enumerate(page.blocks, start=1)])


def marked(image: Image.Image, marks: Sequence[tuple[str, Box, tuple[int, int, int]]]) -> Image.Image:
    """The page with each (label, box, colour) drawn: the box shaded and outlined in its
    colour, its label above its top left corner."""
    shade = Image.new("RGBA", image.size, (0, 0, 0, 0))
    for _label, box, colour in marks:
        ImageDraw.Draw(shade).rectangle(box, fill=colour + (40,))
    canvas = Image.alpha_composite(image.convert("RGBA"), shade).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line_width = max(2, round(max(canvas.size) / 500))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 90)))
    for label, box, colour in marks:
        draw.rectangle(box, outline=colour, width=line_width)
        x, y = box[0], max(0, box[1] - font.size - 2)
        draw.rectangle(draw.textbbox((x, y), label, font=font), fill=colour)
        draw.text((x, y), label, fill=(255, 255, 255), font=font)
    return canvas


def legend(page: PageResult) -> dict[str, tuple[int, int, int]]:
    """The categories present on the page and their colours, for a key beside the overlay."""
    return {b.category: CATEGORY_COLOURS.get(b.category, OTHER_COLOUR) for b in page.blocks}
