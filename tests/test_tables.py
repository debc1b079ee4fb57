from decimal import Decimal as D

import pytest

from models.numbers import Number, convention, number


@pytest.mark.parametrize("text, value, shape", [
    ("12", D("12"), "General"),
    ("0", D("0"), "General"),
    ("-3,5", D("-3.5"), "0.0"),
    ("\u22123,5", D("-3.5"), "0.0"),  # the typographic minus sign
    ("0,5", D("0.5"), "0.0"),
    ("47,5", D("47.5"), "0.0"),
    ("0,50", D("0.50"), "0.00"),
    ("1,250", D("1.250"), "0.000"),  # a comma is the decimal mark
    ("1 250 000,00", D("1250000.00"), "#,##0.00"),
    ("47\u00a0300,50", D("47300.50"), "#,##0.00"),  # no-break space
    ("1\u202f250\u202f000,00", D("1250000.00"), "#,##0.00"),  # narrow no-break space
    ("1 250", D("1250"), "#,##0"),
    (" 47 300,50 ", D("47300.50"), "#,##0.00"),
    ("123456789", D("123456789"), "General"),
    ("1 234 567 890", D("1234567890"), "#,##0"),  # grouped digits are an amount, however long
])
def test_russian_numbers_keep_their_digits_and_their_shape(text, value, shape):
    assert number(text, "ru") == Number(value, shape)
    assert str(number(text, "ru").value) == str(value)  # the digits it was written with are kept


@pytest.mark.parametrize("text", [
    "1.10", "2.10",  # item numbers: "1.10" is not "1.1"
    "41.20",  # an OKPD2 code
    "15.12",  # a date without its year
    "12.5", "1.250", "1,250,000.00",  # a point is never a decimal mark in Russian
])
def test_a_point_is_never_a_decimal_mark_in_a_russian_table(text):
    assert number(text, "ru") is None


@pytest.mark.parametrize("text, value, shape", [
    ("12", D("12"), "General"),
    ("12.50", D("12.50"), "0.00"),
    ("-3.5", D("-3.5"), "0.0"),
    ("1,250", D("1250"), "#,##0"),
    ("1,250,000.00", D("1250000.00"), "#,##0.00"),
    ("12,480.00", D("12480.00"), "#,##0.00"),
    ("1 250.75", D("1250.75"), "#,##0.00"),
    ("15.12", D("15.12"), "0.00"),
])
def test_english_numbers_keep_their_digits_and_their_shape(text, value, shape):
    assert number(text, "en") == Number(value, shape)
    assert str(number(text, "en").value) == str(value)


@pytest.mark.parametrize("way", ["ru", "en"])
@pytest.mark.parametrize("text", [
    "007",  # leading zeros: a code
    "0012,5",
    "7707083893",  # INN of 10 digits
    "500100732259",  # INN of 12 digits
    "1027700132195",  # OGRN
    "40702810900000012345",  # bank account
    "26.20.15.000",  # OKPD2 code
    "15.12.2026",  # a date
    "1 234 567 890 123 456",  # more digits than an Excel number keeps
    "12%",
    "5 кг",
    "+7",
    "1e5",
    "1 25 000",  # broken grouping
    "1,25,000",
    "12 345,",
    ",5",
    "--3",
    "(3,5)",
    "",
    "Итого",
])
def test_identifiers_dates_and_the_like_stay_text(text, way):
    assert number(text, way) is None


def test_comma_decimals_are_english_text():
    assert number("0,5", "en") is None and number("47 300,50", "en") is None


def test_a_tables_convention_is_its_letters_or_else_its_pages():
    assert convention(["Наименование", "1.10"]) == "ru"
    assert convention(["Item", "1.10"], page_text="Спецификация") == "en"  # the table's own letters decide
    assert convention(["1.10", "15.12"], page_text="Спецификация поставки") == "ru"
    assert convention(["1.10", "15.12"], page_text="Delivery schedule") == "en"
    assert convention(["1.10"]) == "en"
