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


def pdf_of_images(images: list[Image.Image], fmt: str = "PNG") -> bytes:
    """A scanned-style PDF: each image on its own A4 page, no text layer. PNG pages are kept
    as raw pixels (~12 MB an A4 page); JPEG ones as JPEG (~0.3 MB), as a scanner's are."""
    import pymupdf

    pdf = pymupdf.open()
    for img in images:
        page = pdf.new_page(width=595, height=842)
        page.insert_image(page.rect, stream=encode(img, fmt))
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


# A tender notice on two pages: a valid INN, a KPP one digit short, and the initial price
# printed differently on each page (a conflict).
TENDER = [["Извещение № 0373100000126000001", "ИНН 7707083893", "КПП 77360100", "НМЦК 1 250 000,00 руб."],
          ["Приложение к извещению", "НМЦК 1 350 000,00 руб."]]
TENDER_VALUES = [{"notice_number": (0, "0373100000126000001"), "customer_inn": (1, "7707083893"),
                  "customer_kpp": (2, "77360100"), "initial_price": (3, "1 250 000,00 руб.")},
                 {"initial_price": (1, "1 350 000,00 руб.")}]


def tender_run():
    """A fields run of TENDER as an engine gives it (each value with its page and its line's
    box), its fields collected as the runner collects them, and the PDF it was read from."""
    from managers.runs import Choice, Run
    from models.config import load_config
    from models.fields.collect import collect
    from models.fields.result import FoundValue
    from models.result import OCRResult, PageResult

    pages = []
    for index, (lines, values) in enumerate(zip(TENDER, TENDER_VALUES)):
        boxes = line_boxes(lines)
        found = [FoundValue(name=name, value=value, page=index, bbox=boxes[line])
                 for name, (line, value) in values.items()]
        pages.append(PageResult(index=index, width=A4[0], height=A4[1], text="\n".join(lines), fields=found))
    template = load_config().template("tender_notice")
    result = OCRResult(model="tesseract", engine="tesseract", task="fields", pages=pages, template="tender_notice",
                       fields=collect(template, [v for page in pages for v in page.fields]))
    document = pdf_of_images([render_lines(lines) for lines in TENDER])
    return Run(Choice("tesseract", "cpu", "fields", template="tender_notice"), result), document
