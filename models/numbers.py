"""When a table cell is a number: only when a Russian or an English reader reads it as one.

Numbers: "12", "-3,5" (also with the minus sign U+2212), "0,5", "12.5", "1 250 000,00"
(thousands separated by a space, U+00A0, U+202F or U+2009; decimals after a comma or a
point) and "1,250,000.00".

Text, because they are identifiers, dates or amounts with units: leading zeros ("007"),
10 and more ungrouped digits (INN, OGRN, bank accounts), several points or commas without
grouping ("26.20.15.000", "15.12.2026"), signs and units ("12%", "5 кг", "+7").

"1,250" stays text: an English reader reads 1250, a Russian one 1.25, and a wrong number is
worse than a text cell. "1.250" is 1.25: neither language writes thousands with a point.
Values are Decimal, so a price keeps the digits it was written with.
"""

from __future__ import annotations

import re
from decimal import Decimal

_GAP = "[ \u00a0\u202f\u2009]"
_PLAIN = re.compile(r"(?:0|[1-9]\d{0,8})(?:[.,]\d+)?")
_SPACED = re.compile(rf"[1-9]\d{{0,2}}(?:{_GAP}\d{{3}})+(?:[.,]\d+)?")
_COMMAS = re.compile(r"[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_AMBIGUOUS = re.compile(r"[1-9]\d{0,2},\d{3}")
_MINUS = ("-", "\u2212")


def number(text: str) -> Decimal | None:
    """The number ``text`` is written as, or None when a reader would not read it as one."""
    body = text.strip()
    sign = "-" if body[:1] in _MINUS else ""
    body = body[len(sign):]
    if _AMBIGUOUS.fullmatch(body):
        return None
    if _COMMAS.fullmatch(body):
        return Decimal(sign + body.replace(",", ""))
    if _PLAIN.fullmatch(body) or _SPACED.fullmatch(body):
        return Decimal(sign + re.sub(_GAP, "", body).replace(",", "."))
    return None


def cell_value(text: str) -> str | Decimal:
    value = number(text)
    return text if value is None else value
