import pytest
from PIL import Image

from models.config import CPUBackend
from models.document import InputError, Page, open_document
from models.errors import NotAvailable
from managers.engines.tesseract import TesseractEngine, parse_tsv
from tests.helpers import ENGLISH, MIXED, RUSSIAN, cer, line_boxes, pdf_of_images, pdf_with_text, render_lines


@pytest.fixture
def engine(config):
    return TesseractEngine("tesseract", config.models["tesseract"])


@pytest.mark.parametrize("lines", [ENGLISH, RUSSIAN, MIXED], ids=["english", "russian", "mixed"])
def test_known_text_comes_back(engine, lines):
    page = engine.process_image(render_lines(lines))
    assert page.error is None
    assert cer("\n".join(lines), page.text) <= 0.02, page.text
    assert (page.width, page.height) == (1654, 2339)


def test_line_boxes_are_where_the_lines_were_drawn(engine):
    page = engine.process_image(render_lines(ENGLISH))
    assert [b.category for b in page.blocks] == ["Text"] * 3
    for block, (x0, y0, x1, y1) in zip(page.blocks, line_boxes(ENGLISH)):
        bx0, by0, bx1, by1 = block.bbox
        assert abs(bx0 - x0) <= 8 and abs(by0 - y0) <= 12 and abs(bx1 - x1) <= 8 and abs(by1 - y1) <= 12


def test_scanned_pdf_is_read_page_by_page(engine, limits):
    doc = open_document(pdf_of_images([render_lines(RUSSIAN), render_lines(ENGLISH)]), "scan.pdf", limits)
    seen = []
    result = engine.ocr(doc.pages(), on_page=lambda done, total, page: seen.append((done, total, page.index)))
    assert seen == [(1, 2, 0), (2, 2, 1)]
    assert (result.model, result.engine, result.task) == ("tesseract", "tesseract", "text")
    assert cer("\n".join(RUSSIAN), result.pages[0].text) <= 0.02
    assert cer("\n".join(ENGLISH), result.pages[1].text) <= 0.02
    assert all(p.seconds > 0 for p in result.pages)


def test_born_digital_pdf_uses_its_text_layer(engine, limits):
    doc = open_document(pdf_with_text([RUSSIAN]), "digital.pdf", limits)
    page = engine.ocr(doc.pages()).pages[0]
    assert [line for line in page.text.splitlines() if line] == RUSSIAN
    assert "text layer" in page.warnings[0]
    assert len(page.blocks) == 3


class FailingPage:
    """A page source whose decoding fails, as a damaged page of a real document does."""

    index = 1

    def load(self, max_pixels=None):
        raise InputError("Page 2 of 'x.pdf' cannot be rendered (damaged stream); the other pages are not affected.")


class CrashingPage(FailingPage):
    index = 2

    def load(self, max_pixels=None):
        raise RuntimeError("boom")


def test_a_failed_page_keeps_the_others(engine):
    good = Page(0, render_lines(ENGLISH[:1], size=(1200, 300)))
    result = engine.ocr([good, FailingPage(), CrashingPage(), Page(3, render_lines(RUSSIAN[:1], size=(1200, 300)))])
    assert [p.index for p in result.pages] == [0, 1, 2, 3]
    assert result.pages[1].error.startswith("Page 2 of 'x.pdf' cannot be rendered")
    assert result.pages[2].error == "Page 3 failed unexpectedly: boom"
    assert cer(ENGLISH[0], result.pages[0].text) <= 0.02
    assert cer(RUSSIAN[0], result.pages[3].text) <= 0.02
    assert len(result.failed) == 2


def test_missing_language_data_is_named(config):
    model = config.models["tesseract"].model_copy(update={"cpu": CPUBackend(languages=["eng", "klingon"])})
    with pytest.raises(NotAvailable, match="lacks the language data klingon .*tesseract-ocr-klingon"):
        TesseractEngine("tesseract", model)


def test_unknown_task_is_refused(engine):
    with pytest.raises(Exception, match="has no task 'layout'"):
        engine.process_image(render_lines(["x"], size=(100, 100)), "layout")


def test_tsv_parsing_groups_words_into_lines_and_paragraphs():
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "4\t1\t1\t1\t1\t0\t10\t10\t200\t30\t-1\t",
        "5\t1\t1\t1\t1\t1\t10\t10\t80\t30\t96\tHello",
        "5\t1\t1\t1\t1\t2\t100\t12\t110\t28\t95\tworld",
        "5\t1\t1\t1\t2\t1\t10\t50\t60\t30\t91\tnext",
        "5\t1\t2\t1\t1\t1\t10\t200\t70\t30\t90\tДругой",
        "5\t1\t2\t1\t1\t2\t90\t200\t70\t30\t-1\t ",
    ]
    paragraphs = parse_tsv("\n".join([header, *rows]) + "\n")
    assert [[s.text for s in p] for p in paragraphs] == [["Hello world", "next"], ["Другой"]]
    assert paragraphs[0][0].bbox == (10, 10, 210, 40)


def test_blank_page_reads_as_no_text(engine):
    page = engine.process_image(Image.new("RGB", (400, 300), "white"))
    assert page.error is None and page.text == "" and page.blocks == []
