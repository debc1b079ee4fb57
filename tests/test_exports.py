import csv
import io
import json
import subprocess
import sys
import zipfile
from decimal import Decimal as D

import docx
import openpyxl
import pymupdf
import pytest
from PIL import Image, ImageDraw

from managers.runs import make_engine
from managers.runtime import Runtime
from models import exports
from models.answers import Prepared, page_from_answer
from models.document import Page
from models.errors import NothingToExport
from models.result import OCRResult
from tests.conftest import ROOT
from tests.helpers import A4, ENGLISH, RUSSIAN, cer, encode, render_lines

# A tender page as dots.ocr answers it: two tables, the first with cells spanning rows and
# columns, numbers written the Russian and the English way, an INN, an OKPD2 code and a date.
SPEC = """<table><thead><tr><th>№</th><th>Наименование</th><th>ОКПД2</th><th colspan="2">Цена, руб.</th></tr></thead>
<tbody><tr><td rowspan="2">1</td><td>Стул офисный</td><td>26.20.15.000</td><td>1 250 000,00</td><td>-3,5</td></tr>
<tr><td>Стол</td><td>007</td><td>47&nbsp;300,50</td><td>12%</td></tr>
<tr><td>ИНН</td><td colspan="2" rowspan="2">7707083893</td><td>15.12.2026</td><td>0,5</td></tr>
<tr><td>Итого</td><td>1,5</td><td>12</td></tr></tbody></table>"""
PRICES = ("<table><tr><th>Item</th><th>Qty</th><th>Amount</th></tr>"
          "<tr><td>Chair</td><td>12</td><td>1,250,000.00</td></tr>"
          "<tr><td>OGRN</td><td>1027700132195</td><td>1,250</td></tr></table>")
CELLS = [
    {"bbox": [140, 96, 1512, 150], "category": "Page-header", "text": "ООО «Поставка»"},
    {"bbox": [140, 210, 1512, 290], "category": "Title", "text": "# Спецификация поставки"},
    {"bbox": [140, 330, 1512, 380], "category": "Text", "text": "Поставщик поставляет **мебель** в срок."},
    {"bbox": [140, 400, 1512, 900], "category": "Table", "text": SPEC},
    {"bbox": [400, 940, 1250, 1400], "category": "Picture"},
    {"bbox": [140, 1450, 1512, 1500], "category": "List-item", "text": "- Срок поставки: 30 дней"},
    {"bbox": [140, 1550, 1512, 1900], "category": "Table", "text": PRICES},
    {"bbox": [700, 2296, 952, 2352], "category": "Page-footer", "text": "1"},
]
SEEN, SIZE = (1652, 2352), (1653, 2339)

# The grids the tables must come back as: numbers typed, identifiers, codes and dates as
# text, a spanned cell's text once at its first position.
SPEC_GRID = [
    ["№", "Наименование", "ОКПД2", "Цена, руб.", ""],
    [D("1"), "Стул офисный", "26.20.15.000", D("1250000.00"), D("-3.5")],
    ["", "Стол", "007", D("47300.50"), "12%"],
    ["ИНН", "7707083893", "", "15.12.2026", D("0.5")],
    ["Итого", "", "", D("1.5"), D("12")],
]
PRICES_GRID = [
    ["Item", "Qty", "Amount"],
    ["Chair", D("12"), D("1250000.00")],
    ["OGRN", "1027700132195", "1,250"],
]
# What python-docx reads back: a merged cell's text at every grid position it spans.
SPEC_WORD = [
    ["№", "Наименование", "ОКПД2", "Цена, руб.", "Цена, руб."],
    ["1", "Стул офисный", "26.20.15.000", "1 250 000,00", "-3,5"],
    ["1", "Стол", "007", "47 300,50", "12%"],
    ["ИНН", "7707083893", "7707083893", "15.12.2026", "0,5"],
    ["Итого", "7707083893", "7707083893", "1,5", "12"],
]
PRICES_WORD = [["Item", "Qty", "Amount"], ["Chair", "12", "1,250,000.00"], ["OGRN", "1027700132195", "1,250"]]


@pytest.fixture(scope="module")
def page_image():
    image = Image.new("RGB", SIZE, "white")
    ImageDraw.Draw(image).rectangle((500, 950, 1150, 1350), fill=(200, 30, 30))  # the picture
    return image


@pytest.fixture(scope="module")
def layout(page_image):
    """The answer read the way the vLLM and local engines read it."""
    from models.config import load_config

    task = load_config(ROOT / "config.yaml").model("dots_ocr").tasks["layout_all"]
    page = page_from_answer(json.dumps(CELLS, ensure_ascii=False), False, Prepared(0, SIZE, SEEN, []), task,
                            12000, source=Page(0, page_image))
    return OCRResult(model="dots_ocr", engine="openai", task="layout_all", pages=[page])


def unzip(data: bytes) -> dict[str, list[list[str]]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
                for name in archive.namelist()}


def test_xlsx_has_a_sheet_per_table_with_typed_cells_and_the_text(layout):
    made = exports.export(layout, "xlsx", "scans/spec.png", page_image=None)
    assert made.name == "spec.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(made.data))
    assert book.sheetnames == ["p1 t1", "p1 t2", "Text"]
    for name, expected in (("p1 t1", SPEC_GRID), ("p1 t2", PRICES_GRID)):
        read = [["" if v is None else v for v in row] for row in book[name].iter_rows(values_only=True)]
        assert read == expected
        for got, want in zip(sum(read, []), sum(expected, [])):
            assert isinstance(got, str) == isinstance(want, str), (got, want)  # numbers stored as numbers
    assert {str(r) for r in book["p1 t1"].merged_cells.ranges} == {"D1:E1", "A2:A3", "B4:C5"}
    text = [row for row in book["Text"].iter_rows(values_only=True)]
    assert text[0] == ("Page", "Text") and (1, "# Спецификация поставки") in text


def test_csv_is_a_zip_of_one_file_per_table(layout):
    made = exports.export(layout, "csv", "spec.png", page_image=None)
    assert (made.name, made.mime) == ("spec.csv.zip", "application/zip")
    assert unzip(made.data) == {
        "spec.p1.t1.csv": [[str(cell) for cell in row] for row in SPEC_GRID],
        "spec.p1.t2.csv": [[str(cell) for cell in row] for row in PRICES_GRID],
    }


def test_one_table_is_one_csv_and_none_is_no_file():
    one = OCRResult(model="m", engine="e", task="t", pages=[{"index": 0, "markdown": "| a | b |\n|--|--|\n| 1 | x |"}])
    made = exports.export(one, "csv", "one.png", page_image=None)
    assert (made.name, made.data) == ("one.csv", "\ufeffa,b\r\n1,x\r\n".encode())
    with pytest.raises(NothingToExport, match="^No tables were found, so no CSV was written.$"):
        exports.export(OCRResult(model="m", engine="e", task="t", pages=[{"index": 0, "markdown": "text"}]),
                       "csv", "none.png", page_image=None)


def test_docx_in_reading_order_with_word_tables_and_the_picture(layout):
    made = exports.export(layout, "docx", "spec.png", page_image=None)
    document = docx.Document(io.BytesIO(made.data))
    assert [[[cell.text for cell in row.cells] for row in table.rows] for table in document.tables] == [
        SPEC_WORD, PRICES_WORD]
    paragraphs = [(p.style.name, p.text) for p in document.paragraphs if p.text]
    assert paragraphs == [
        ("Normal", "ООО «Поставка»"),
        ("Heading 1", "Спецификация поставки"),
        ("Normal", "Поставщик поставляет мебель в срок."),
        ("List Bullet", "Срок поставки: 30 дней"),
        ("Normal", "1"),
    ]
    assert [r.bold for r in document.paragraphs[2].runs if r.text == "мебель"] == [True]
    [picture] = document.inline_shapes
    assert picture.width == pytest.approx(docx.shared.Inches(850 / 200), rel=0.01)  # the box at 200 dpi
    body = [child.tag.rsplit("}", 1)[1] for child in document.element.body]
    assert body.count("tbl") == 2 and body.index("tbl") < body.index("tbl", body.index("tbl") + 1)


@pytest.fixture(scope="module")
def scanned():
    """Two pages read by the real Tesseract, and the images they were read from."""
    from models.config import load_config

    images = [render_lines(RUSSIAN), render_lines(ENGLISH)]
    engine = make_engine(Runtime(load_config(ROOT / "config.yaml")), "tesseract")
    return engine.ocr([Page(i, image) for i, image in enumerate(images)]), images


def test_searchable_pdf_has_the_read_text_where_it_is_seen(scanned):
    result, images = scanned
    made = exports.export(result, "pdf", "scan.png", page_image=images.__getitem__)
    assert (made.name, made.mime) == ("scan.pdf", "application/pdf")
    pdf = pymupdf.open(stream=made.data)
    assert pdf.page_count == len(result.pages) == 2
    assert tuple(pdf[0].rect)[2:] == pytest.approx((A4[0] * 72 / 200, A4[1] * 72 / 200))  # A4 at 200 dpi
    assert cer("\n".join(RUSSIAN), pdf[0].get_text()) <= 0.02
    assert cer("\n".join(ENGLISH), pdf[1].get_text()) <= 0.02
    assert len(pdf[0].get_images()) == 1 and "DejaVu Sans" in pdf[0].get_fonts()[0][3]
    [found] = pdf[0].search_for("французских")
    assert pdf[1].search_for("французских") == []
    # where the word is on the image: the box Tesseract gave its line, in points
    line = next(b for b in result.pages[0].blocks if "французских" in b.text)
    assert line.bbox[1] * 72 / 200 - 2 <= found.y0 < found.y1 <= line.bbox[3] * 72 / 200 + 2
    assert pdf[1].search_for("quick brown fox")


def test_a_failed_page_keeps_its_image_without_text(scanned):
    result, images = scanned
    failed = result.model_copy(deep=True)
    failed.pages[1] = failed.pages[1].model_copy(update={"error": "Page 2 failed.", "blocks": [], "text": ""})
    pdf = pymupdf.open(stream=exports.export(failed, "pdf", "scan.png", images.__getitem__).data)
    assert pdf.page_count == 2
    assert pdf[1].get_text().strip() == "" and len(pdf[1].get_images()) == 1
    assert cer("\n".join(RUSSIAN), pdf[0].get_text()) <= 0.02


def cli(*args):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    for path in (folder / "page.png", folder / "a" / "same.png", folder / "b" / "same.png"):
        path.write_bytes(encode(render_lines(RUSSIAN), "PNG"))
    return folder


def test_cli_binary_formats_need_an_out_dir(inputs):
    done = cli("ocr", inputs / "page.png", "--model", "tesseract", "--format", "xlsx")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: xlsx is a binary format: give --out DIR.\n"


def test_cli_writes_exports_and_never_overwrites_a_name_twice(inputs, tmp_path):
    out = tmp_path / "out"
    done = cli("ocr", inputs / "page.png", inputs / "a" / "same.png", inputs / "b" / "same.png",
               "--model", "tesseract", "--format", "xlsx", "--out", out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["page.xlsx", "same (2).xlsx", "same.xlsx"]
    assert f"wrote {out / 'same (2).xlsx'} ({inputs / 'b' / 'same.png'} has the name of an earlier input)" \
        in done.stderr.splitlines()
    text = openpyxl.load_workbook(out / "same (2).xlsx")["Text"]
    assert cer("\n".join(RUSSIAN), "\n".join(row[1] for row in text.iter_rows(min_row=2, values_only=True))) <= 0.02


def test_cli_csv_of_a_page_without_tables_writes_nothing_and_says_so(inputs, tmp_path):
    out = tmp_path / "out"
    done = cli("ocr", inputs / "page.png", "--model", "tesseract", "--format", "csv", "--out", out)
    assert done.returncode == 0, done.stderr
    assert not out.exists()  # not even the folder was made
    assert done.stderr.splitlines()[-1] == "page.png: No tables were found, so no CSV was written."
