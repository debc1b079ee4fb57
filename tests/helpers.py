"""Test helpers: pages rendered with known text, and the character error rate."""

from __future__ import annotations

import io
import os

from PIL import Image, ImageDraw, ImageFont

from models.metrics import score

# Debian's fonts-dejavu-core; elsewhere (the GPU machine) the benchmark carries the file.
FONT = os.environ.get("CHATVLMLLM_TEST_FONT", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
# A4 at 200 dpi, as the intake renders PDF pages.
A4 = (1654, 2339)

ENGLISH = [
    "Invoice number 4711 for delivery of office chairs",
    "The quick brown fox jumps over the lazy dog",
    "Total amount due: 12,480.00 EUR by 15 March 2026",
]
RUSSIAN = [
    "Техническое задание на поставку оборудования",
    "Съешь же ещё этих мягких французских булок",
    "Срок подачи заявок истекает пятнадцатого марта",
]
MIXED = [RUSSIAN[0], ENGLISH[0], RUSSIAN[1], ENGLISH[1]]


def render_lines(lines: list[str], size=A4, font_size=40, top=150, gap=90) -> Image.Image:
    """A white page with each line drawn in black DejaVu Sans, one under the other."""
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, font_size)
    for i, line in enumerate(lines):
        draw.text((120, top + i * gap), line, font=font, fill="black")
    return img


def line_boxes(lines: list[str], font_size=40, top=150, gap=90) -> list[tuple[int, int, int, int]]:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = ImageFont.truetype(FONT, font_size)
    return [draw.textbbox((120, top + i * gap), line, font=font) for i, line in enumerate(lines)]


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def pdf_of_images(images: list[Image.Image]) -> bytes:
    """A scanned-style PDF: each image on its own A4 page, no text layer."""
    import pymupdf

    pdf = pymupdf.open()
    for img in images:
        page = pdf.new_page(width=595, height=842)
        page.insert_image(page.rect, stream=encode(img, "PNG"))
    return pdf.tobytes()


def pdf_with_text(pages: list[list[str]]) -> bytes:
    """A born-digital PDF: real text in DejaVu Sans, so it has a text layer."""
    import pymupdf

    pdf = pymupdf.open()
    for lines in pages:
        page = pdf.new_page(width=595, height=842)
        for i, line in enumerate(lines):
            page.insert_text((50, 80 + 30 * i), line, fontsize=12, fontname="dejavu", fontfile=FONT)
    return pdf.tobytes()


def cer(expected: str, actual: str) -> float:
    """Character error rate, as the app and ``cli.py eval`` measure it (models/metrics.py)."""
    return score(expected, actual).cer
