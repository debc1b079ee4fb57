"""Renderers of the result contract: plain text, Markdown, JSON, and the page with its boxes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

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
    shade = Image.new("RGBA", image.size, (0, 0, 0, 0))
    for block in page.blocks:
        colour = CATEGORY_COLOURS.get(block.category, OTHER_COLOUR)
        ImageDraw.Draw(shade).rectangle(block.bbox, fill=colour + (40,))
    canvas = Image.alpha_composite(image.convert("RGBA"), shade).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    line_width = max(2, round(max(canvas.size) / 500))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 90)))
    for n, block in enumerate(page.blocks, start=1):
        colour = CATEGORY_COLOURS.get(block.category, OTHER_COLOUR)
        draw.rectangle(block.bbox, outline=colour, width=line_width)
        x, y = block.bbox[0], max(0, block.bbox[1] - font.size - 2)
        draw.rectangle(draw.textbbox((x, y), str(n), font=font), fill=colour)
        draw.text((x, y), str(n), fill=(255, 255, 255), font=font)
    return canvas


def legend(page: PageResult) -> dict[str, tuple[int, int, int]]:
    """The categories present on the page and their colours, for a key beside the overlay."""
    return {b.category: CATEGORY_COLOURS.get(b.category, OTHER_COLOUR) for b in page.blocks}
