import json

from PIL import Image

from models import render
from models.markdown import escape_line
from models.result import Block, OCRResult, PageResult

CONTRACT_PAGE_KEYS = {"index", "width", "height", "seconds", "error", "warnings", "text", "markdown", "blocks",
                     "source", "elements", "fields"}


def result():
    return OCRResult(model="tesseract", engine="tesseract", task="text", seconds=1.5, pages=[
        PageResult(index=0, width=200, height=100, text="first page", markdown="first page",
                   blocks=[Block(bbox=(10, 20, 110, 60), category="Title", text="first page")]),
        PageResult(index=1, width=200, height=100, error="Page 2 is damaged."),
        PageResult(index=2, width=200, height=100, text="third", markdown="# third"),
    ])


def test_text_pages_are_separated_by_form_feeds():
    assert render.text(result()) == "first page\f\fthird"


def test_markdown_marks_each_page():
    md = render.markdown(result())
    assert md.startswith("<!-- page 1 -->\n\nfirst page")
    assert "<!-- page 3 -->\n\n# third" in md
    single = OCRResult(model="m", engine="e", task="t", pages=[result().pages[0]])
    assert render.markdown(single) == "first page"


def test_json_is_the_result_contract():
    data = json.loads(render.json(result()))
    assert set(data) == {"model", "engine", "task", "seconds", "pages", "template", "fields"}
    assert all(set(p) == CONTRACT_PAGE_KEYS for p in data["pages"])
    assert data["pages"][0]["blocks"] == [{"bbox": [10, 20, 110, 60], "category": "Title", "text": "first page"}]
    assert data["pages"][1]["error"] == "Page 2 is damaged."
    assert OCRResult.model_validate(data) == result()


def test_block_boxes_are_normalised():
    assert Block(bbox=(110, 60, 10, 20)).bbox == (10, 20, 110, 60)


def test_overlay_draws_each_box_in_its_category_colour():
    page = result().pages[0]
    page.blocks.append(Block(bbox=(150, 70, 190, 95), category="Table"))
    drawn = render.overlay(Image.new("RGB", (200, 100), "white"), page)
    assert drawn.size == (200, 100)
    assert drawn.getpixel((60, 59)) == render.CATEGORY_COLOURS["Title"]  # bottom edge of box 1
    assert drawn.getpixel((189, 80)) == render.CATEGORY_COLOURS["Table"]  # right edge of box 2
    inside = drawn.getpixel((60, 45))
    assert inside != (255, 255, 255) and inside[0] > 200  # shaded, text still readable
    assert drawn.getpixel((5, 95)) == (255, 255, 255)  # outside every box
    assert render.legend(page) == {"Title": render.CATEGORY_COLOURS["Title"],
                                   "Table": render.CATEGORY_COLOURS["Table"]}


def test_output_names():
    page = result().pages[2]
    assert render.output_name("scans/contract.pdf", "md") == "contract.md"
    assert render.output_name("contract.pdf", "json", page) == "contract.p3.json"
    for fmt in render.FORMATS:
        assert render.PAGE_RENDERERS[fmt](page)
        assert render.render(result(), fmt)


def test_markdown_escaping_keeps_ocr_text_literal():
    assert escape_line("# not a heading") == "\\# not a heading"
    assert escape_line("1. not a list") == "1\\. not a list"
    assert escape_line("price *5* <b>") == "price \\*5\\* \\<b\\>"
    assert escape_line("Обычный текст") == "Обычный текст"
