"""A PDF page's own text is used only where it covers the page (models/text_layer.py):
born-digital pages, scans with a software stamp, scans with an old invisible OCR layer —
built with PyMuPDF and read by the real Tesseract."""

import pymupdf
import pytest
from PIL import Image

from managers.engines.tesseract import TesseractEngine
from managers.prepare import describe, prepare_page
from models.document import open_document
from models.text_layer import Facts, Use, check, facts, judge, lines
from tests.degrade import tender_page, turned
from tests.helpers import ENGLISH, FONT, RUSSIAN, cer, encode, pdf_with_text, render_lines

PAGE = RUSSIAN + ENGLISH + [
    "Поставщик: ООО «Ромашка», ИНН 7701234567",
    "Количество: 25 штук по цене 1 250,00 руб.",
    "Адрес доставки: г. Москва, ул. Ленина, д. 1",
    "Подпись руководителя и печать организации",
]
PT = 72 / 200  # points per pixel of a page rendered at 200 dpi
# An old OCR engine's reading of PAGE: Latin look-alikes, split words, lost letters.
POOR = [line.translate(str.maketrans("аеоспхиткАЕОСРНТМ", "aeocpxn7kAEOCPHTM")).replace("ч", "4 ").replace("л", "")
        for line in PAGE]


def scan(image: Image.Image, stamp: str | None = None, layer: list[str] | None = None,
         render_mode: int = 3, layer_first: bool = False) -> bytes:
    """A scanned PDF page: ``image`` over the whole page, a software ``stamp`` printed on it,
    and a ``layer`` of text over the lines render_lines drew (invisible by default; drawn
    before the image, ``layer_first``, it is painted over)."""
    pdf = pymupdf.open()
    page = pdf.new_page(width=image.width * PT, height=image.height * PT)

    def write_layer():
        for i, line in enumerate(layer or []):
            page.insert_text((120 * PT, (150 + 90 * i + 38) * PT), line, fontsize=40 * PT,
                             fontname="dejavu", fontfile=FONT, render_mode=render_mode)
    if layer_first:
        write_layer()
    page.insert_image(page.rect, stream=encode(image, "PNG"))
    if not layer_first:
        write_layer()
    if stamp:
        page.insert_text((page.rect.width / 2, page.rect.height - 30), stamp, fontsize=10,
                         fontname="dejavu", fontfile=FONT)
    return pdf.tobytes()


@pytest.fixture
def engine(config):
    return TesseractEngine("tesseract", config.models["tesseract"])


def read(engine, data, limits):
    return engine.ocr(open_document(data, "doc.pdf", limits).pages()).pages[0]


def test_a_born_digital_page_is_read_from_its_layer(engine, limits):
    page = read(engine, pdf_with_text([PAGE]), limits)
    assert page.source == "text layer"
    assert [line for line in page.text.splitlines() if line] == PAGE  # exact: no OCR ran
    assert page.warnings == ["Page 1 was read from the PDF's own text layer, not by OCR."]


def test_a_scan_with_a_software_stamp_is_read_by_ocr(engine, limits):
    page = read(engine, scan(render_lines(PAGE), stamp="стр. 1"), limits)
    assert page.source == "image"
    assert cer("\n".join(PAGE + ["стр. 1"]), page.text) <= 0.03, page.text
    assert len(page.blocks) == len(PAGE) + 1
    assert page.warnings == ["Page 1 has a text layer covering only a small part (1%) of the text "
                             "printed on it, such as a stamp or a header; it was read by OCR."]


def test_a_scan_with_a_poor_invisible_ocr_layer_is_read_by_ocr(engine, limits):
    page = read(engine, scan(render_lines(PAGE), layer=POOR), limits)
    assert page.source == "image"
    assert cer("\n".join(PAGE), page.text) <= 0.02, page.text
    assert "differs from what is printed" in page.warnings[0] and "read by OCR" in page.warnings[0]


def test_a_scan_with_a_good_invisible_ocr_layer_keeps_it(engine, limits):
    # Tesseract read the page too and agrees: the layer's own text is kept as it is.
    page = read(engine, scan(render_lines(PAGE), layer=PAGE), limits)
    assert page.source == "text layer"
    assert [line for line in page.text.splitlines() if line] == PAGE
    assert "invisible OCR text layer, which agrees with OCR" in page.warnings[0]


def test_text_painted_over_by_the_scan_is_checked_like_an_invisible_layer(engine, limits):
    page = read(engine, scan(render_lines(PAGE), layer=POOR, render_mode=0, layer_first=True), limits)
    assert page.source == "image" and "differs from what is printed" in page.warnings[0]
    assert cer("\n".join(PAGE), page.text) <= 0.02, page.text


def test_facts_count_what_is_seen_and_what_is_printed(limits):
    data = scan(render_lines(PAGE[:2]), stamp="стр. 1", layer=["невидимый"])
    pdf_page = pymupdf.open(stream=data)[0]
    image = open_document(data, "doc.pdf", limits).page(0).image
    seen = facts(pdf_page, lines(pdf_page, 200 / 72), 200 / 72, image)
    assert (seen.visible_chars, seen.hidden_chars) == (5, 9)  # "стр.1"; "невидимый"
    # Every letter of the two lines is a glyph-sized mark ("й" is two); the layer covers
    # the stamp and the word "невидимый" drawn over the start of the first line.
    assert 75 <= seen.glyphs <= 95
    assert 5 <= seen.covered <= 20


def test_a_sideways_scan_with_a_stamp_is_prepared_like_any_scan(limits, config):
    page = open_document(scan(turned(tender_page(), 90), stamp="стр. 1"), "doc.pdf", limits).page(0)
    assert page.text_layer is None
    prepared = prepare_page(page, config.models["qwen3_vl_2b"].preprocess)
    assert describe(prepared.warnings) == "turned 90° clockwise"


@pytest.mark.parametrize("facts_, use", [
    (Facts(visible_chars=377, hidden_chars=0, glyphs=370, covered=370), Use.LAYER),
    (Facts(visible_chars=377, hidden_chars=0, glyphs=440, covered=370), Use.LAYER),  # a logo beside
    (Facts(visible_chars=0, hidden_chars=377, glyphs=368, covered=368), Use.CHECK),
    (Facts(visible_chars=5, hidden_chars=377, glyphs=372, covered=372), Use.CHECK),  # stamp + OCR layer
    (Facts(visible_chars=5, hidden_chars=0, glyphs=372, covered=4), Use.IMAGE),
    (Facts(visible_chars=60, hidden_chars=0, glyphs=372, covered=60), Use.IMAGE),  # a header
    (Facts(visible_chars=0, hidden_chars=0, glyphs=372, covered=0), Use.IMAGE),  # no layer at all
    (Facts(visible_chars=5, hidden_chars=0, glyphs=4, covered=4), Use.LAYER),  # a blank page's stamp
], ids=["born-digital", "with-logo", "ocr-layer", "stamp-and-ocr-layer", "stamp", "header", "none", "blank"])
def test_judge(facts_, use):
    verdict = judge(facts_, 2)
    assert verdict.use is use
    assert (verdict.note is not None) == (use is Use.IMAGE and facts_.visible_chars > 0)


def test_an_ocr_layer_is_kept_where_a_reading_agrees_with_it_in_any_word_order():
    text = "\n".join(PAGE)
    assert check(text, "\n".join(PAGE[5:] + PAGE[:5]), 1).use is Use.LAYER
    assert check(text, text.replace("о", "0", 3), 1).use is Use.LAYER
    poor = check("\n".join(POOR), text, 3)
    assert poor.use is Use.IMAGE and poor.note.startswith("Page 3 has an invisible OCR text layer")


def test_a_turned_born_digital_page_keeps_its_layer_with_boxes_on_the_page_as_shown(limits):
    pdf = pymupdf.open(stream=pdf_with_text([PAGE]))
    pdf[0].set_rotation(90)  # /Rotate: a landscape page stored upright
    page = open_document(pdf.tobytes(), "turned.pdf", limits).page(0)
    assert page.image.size == (2339, 1653) and page.text_layer_note is None
    x0, y0, x1, y1 = page.text_layer[0][0].bbox
    # The first line runs down the right edge: 80 pt from the top edge of the stored page.
    assert 2090 < x0 < x1 < 2170 and 130 < y0 < 150 and y1 - y0 > 500
