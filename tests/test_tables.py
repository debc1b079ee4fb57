from decimal import Decimal as D

import pytest

from models import tables
from models.numbers import cell_value, number
from models.result import OCRResult, PageResult


@pytest.mark.parametrize("text, value", [
    ("12", D("12")),
    ("0", D("0")),
    ("-3,5", D("-3.5")),
    ("\u22123,5", D("-3.5")),  # the typographic minus sign
    ("0,5", D("0.5")),
    ("1,5", D("1.5")),
    ("12.5", D("12.5")),
    ("1.250", D("1.250")),  # neither Russian nor English writes thousands with a point
    ("1 250 000,00", D("1250000.00")),
    ("47\u00a0300,50", D("47300.50")),  # no-break space
    ("1\u202f250\u202f000,00", D("1250000.00")),  # narrow no-break space
    ("1 250", D("1250")),
    ("1 250.75", D("1250.75")),
    ("1,250,000.00", D("1250000.00")),
    ("1,250,000", D("1250000")),
    ("12,480.00", D("12480.00")),
    (" 47 300,50 ", D("47300.50")),
    ("123456789", D("123456789")),
    ("1 234 567 890", D("1234567890")),  # grouped digits are an amount, however long
])
def test_numbers_as_a_reader_means_them(text, value):
    assert number(text) == value
    assert str(number(text)) == str(value)  # the digits it was written with are kept


@pytest.mark.parametrize("text", [
    "007",  # leading zeros: a code
    "0012,5",
    "7707083893",  # INN of 10 digits
    "500100732259",  # INN of 12 digits
    "1027700132195",  # OGRN
    "40702810900000012345",  # bank account
    "26.20.15.000",  # OKPD2 code
    "15.12.2026",  # a date
    "1,250",  # 1250 to an English reader, 1.25 to a Russian one
    "-1,250",
    "12%",
    "5 кг",
    "+7",
    "1e5",
    "1 25 000",  # broken grouping
    "12 345,",
    ",5",
    "--3",
    "(3,5)",
    "",
    "Итого",
])
def test_identifiers_dates_and_ambiguities_stay_text(text):
    assert number(text) is None
    assert cell_value(text) == text


SPANNED = """<table>
<tr><th>№</th><th>Наименование</th><th colspan="2">Цена</th></tr>
<tr><td rowspan="2">1</td><td>Стул<br>офисный</td><td>1 250 000,00</td><td>007</td></tr>
<tr><td>Стол</td><td>47&nbsp;300,50</td><td>15.12.2026</td></tr>
<tr><td>ИНН</td><td colspan="2" rowspan="2">7707083893</td><td>-3,5</td></tr>
<tr><td>Итого</td><td>12</td></tr>
</table>"""


def test_html_spans_keep_their_text_once_at_the_first_position():
    [grid] = tables.find(SPANNED)
    assert grid.cells == [
        ["№", "Наименование", "Цена", ""],
        ["1", "Стул офисный", "1 250 000,00", "007"],
        ["", "Стол", "47 300,50", "15.12.2026"],
        ["ИНН", "7707083893", "", "-3,5"],
        ["Итого", "", "", "12"],
    ]
    assert grid.merges == [tables.Merge(0, 2, 1, 2), tables.Merge(1, 0, 2, 1), tables.Merge(3, 1, 2, 2)]
    assert grid.rows[1] == [D(1), "Стул офисный", D("1250000.00"), "007"]
    assert grid.rows[4] == ["Итого", "", "", D(12)]


def test_malformed_spans_are_clipped_to_the_table():
    [grid] = tables.find('<table><tr><td rowspan="9">a</td><td colspan="x">b</td></tr>'
                         '<tr><td colspan="3">c</td></tr></table>')
    assert grid.cells == [["a", "b", "", ""], ["", "c", "", ""]]
    assert grid.merges == [tables.Merge(0, 0, 2, 1), tables.Merge(1, 1, 1, 3)]


def test_markdown_pipe_tables_html_tables_and_html_fences_in_reading_order():
    markdown = ("# Прайс\n\n| Товар | Цена |\n|---|---|\n| **Стул** | 1 250,00 |\n| `A-1` |\n\n"
                "Текст между таблицами.\n\n"
                "<table><tr><td>a</td></tr>\n\n<tr><td>b</td></tr></table>\n\n"  # a blank line inside
                "```html\n<html><body><p>x</p><table><tr><td>c</td></tr></table></body></html>\n```\n")
    grids = tables.find(markdown)
    assert [g.cells for g in grids] == [
        [["Товар", "Цена"], ["Стул", "1 250,00"], ["A-1", ""]],
        [["a"], ["b"]],
        [["c"]],
    ]


def test_text_without_tables_has_none():
    assert tables.find("Просто текст, 12 | 13, и \\| экранированная черта") == []
    assert tables.find("") == []
    assert tables.find("<p>no table here</p>") == []


def test_tables_of_a_result_in_page_order():
    result = OCRResult(model="m", engine="e", task="t", pages=[
        PageResult(index=0, markdown="| a |\n|---|\n| 1 |\n\n<table><tr><td>2</td></tr></table>"),
        PageResult(index=1, error="Page 2 is damaged."),
        PageResult(index=2, markdown="<table><tr><td>3</td></tr></table>"),
    ])
    found = tables.of_result(result)
    assert [(t.page, t.number, t.name) for t in found] == [(0, 1, "p1 t1"), (0, 2, "p1 t2"), (2, 1, "p3 t1")]
    assert [t.rows for t in found] == [[["a"], [D(1)]], [[D(2)]], [[D(3)]]]
