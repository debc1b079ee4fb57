from decimal import Decimal as D

import pytest

from models.numbers import cell_value, number


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
