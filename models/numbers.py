"""When a table cell is a number in a spreadsheet: only when that loses nothing.

Which mark separates decimals depends on who wrote the table, so a cell is read by its table's
convention (``convention``): a table with Cyrillic letters is Russian, one with Latin letters
only is English, one without letters (all figures) goes by its page's text.

- Russian: the decimal mark is a comma and a point is never one, so "1.10", "2.10", "41.20"
  and "15.12" (item numbers, OKPD2 codes, dates) stay text; "0,5", "47,5" and "1 250 000,00"
  (thousands separated by a space, U+00A0, U+202F or U+2009) are numbers.
- English: the decimal mark is a point and a comma groups thousands: "12.50", "1,250" and
  "1,250,000.00" are numbers.

Text in both, because they are identifiers, dates or amounts with units: leading zeros
("007"), 10 and more ungrouped digits (INN, OGRN, bank accounts), several marks without
grouping ("26.20.15.000", "15.12.2026"), signs and units ("12%", "5 кг", "+7"), and more
significant digits than Excel keeps (15).

A number keeps how it was written through its number format: its decimals ("0,50" → "0.00")
and its grouping ("1 250 000,00" → "#,##0.00", which Excel shows with the reader's own
separators). Values are Decimal, so a price keeps the digits it was written with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Convention = Literal["ru", "en"]

_GAP = "[ \u00a0\u202f\u2009]"
_CYRILLIC = re.compile("[\u0400-\u04ff]")
_LATIN = re.compile("[A-Za-z]")
# The integer part: at most 9 ungrouped digits without a leading zero, or groups of three.
_PLAIN = r"(?:0|[1-9]\d{0,8})"
_NUMBERS = {
    "ru": re.compile(rf"(?P<int>{_PLAIN}|[1-9]\d{{0,2}}(?:{_GAP}\d{{3}})+)(?:,(?P<dec>\d+))?"),
    "en": re.compile(rf"(?P<int>{_PLAIN}|[1-9]\d{{0,2}}(?:,\d{{3}})+|[1-9]\d{{0,2}}(?:{_GAP}\d{{3}})+)"
                     r"(?:\.(?P<dec>\d+))?"),
}
_MINUS = ("-", "\u2212")
EXCEL_DIGITS = 15  # significant digits an Excel number keeps


@dataclass(frozen=True)
class Number:
    value: Decimal
    format: str  # an Excel number format that shows the value as it was written


def convention(cells: Iterable[str], page_text: str = "") -> Convention:
    """The table's convention: by its letters, or by its page's when it has none."""
    text = "".join(cells)
    if _CYRILLIC.search(text):
        return "ru"
    if _LATIN.search(text):
        return "en"
    return "ru" if _CYRILLIC.search(page_text) else "en"


def number(text: str, way: Convention) -> Number | None:
    """The number ``text`` is written as in a table of convention ``way``, or None when it is
    not one or a spreadsheet number would lose something of it."""
    body = text.strip()
    sign = "-" if body[:1] in _MINUS else ""
    found = _NUMBERS[way].fullmatch(body[len(sign):])
    if found is None:
        return None
    digits = re.sub(rf"{_GAP}|,", "", found["int"])
    decimals = found["dec"] or ""
    if len((digits + decimals).lstrip("0")) > EXCEL_DIGITS:
        return None
    grouped = len(digits) != len(found["int"])
    places = "." + "0" * len(decimals) if decimals else ""
    shape = ("#,##0" if grouped else "0") + places
    return Number(Decimal(f"{sign}{digits}.{decimals}" if decimals else sign + digits),
                  "General" if shape == "0" else shape)
