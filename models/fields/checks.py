"""Each value parsed by its field's type and checked by its field's check.

Kept libraries do the checking where one exists: ``python-stdnum`` for INN and OGRN
checksums, ``dateparser`` for dates written in Russian or English ("«15» января 2026 г.",
"15.01.2026", "January 15, 2026"), ``phonenumbers`` and ``email-validator``. Sums follow the
project's number rules (models/numbers.py) in the template's convention. What no library
holds is written here with its source: KPP's and BIK's shapes, and a bank account's control
key, computed over the last three digits of its bank's BIK and the account's 20 digits with
the weights 7, 1, 3 (Bank of Russia regulation 385-П; a correspondent account uses "0" and
the BIK's 5th and 6th digits instead). A settlement account (``account``) is a client's, never
the bank's own correspondent account (30101…), which ``correspondent_account`` checks: the two
stand side by side in bank details, so each check says which of them a value is.

Digits are ASCII digits: an identifier or a sum written with other scripts' digits is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from models import numbers
from models.fields.result import Value, as_text
from models.fields.template import ACCOUNT_CHECKS, TemplateField
from models.i18n import Message, _

_SPACES = re.compile(r"\s+")
_KPP = re.compile(r"[0-9]{4}[0-9A-Z]{2}[0-9]{3}")
_BIK = re.compile(r"04[0-9]{7}")
# A time of day printed with a date ("20.12.2026 10:00", "до 10:00 (МСК) 20.12.2026",
# "11:30 PM"); not a time zone's offset ("+03:00").
_TIME = re.compile(r"(?<![0-9:.+-])(?P<h>[01]?[0-9]|2[0-3]):(?P<m>[0-5][0-9])(?::[0-5][0-9])?(?![0-9:])"
                   r"(?:\s*(?P<pm>p\.?m\.?)|\s*(?P<am>a\.?m\.?))?", re.IGNORECASE)
_CORRESPONDENT = "30101"  # a bank's correspondent account in the Bank of Russia
# Currency words and marks around a sum (the words of a sum written out in brackets go first),
# the EIS's "Российский рубль" too.
_CURRENCY = re.compile(r"(?:российск\w*\s+)?руб\w*\.?|₽|RUB|р\.|USD|EUR|\$|€", re.IGNORECASE)
# "1 250 000 рублей 00 копеек": the kopecks as the sum's decimals.
_KOPECKS = re.compile(r"^(?P<rub>.*?[0-9])\s*(?:руб\w*\.?|р\.)\s*(?P<kop>[0-9]{1,2})\s*коп\w*\.?$",
                      re.IGNORECASE)
# A sum's own decimals, which the kopecks written after it repeat ("1 250 000,00 рублей 00 копеек").
_DECIMALS = re.compile(r"[.,](?P<dec>[0-9]{2})$")
# Digits without grouping: a sum of a billion or more as the EIS prints it ("1250000000.00").
# (up to the 15 digits a spreadsheet number keeps: more are no sum there either).
_UNGROUPED = re.compile(r"(?P<int>[1-9][0-9]{9,14})(?P<rest>(?:[.,][0-9]+)?)")
_ACCOUNT_WEIGHTS = (7, 1, 3)


@dataclass(frozen=True)
class Checked:
    ok: bool
    normalized: str | None = None
    reason: Message | None = None


def _bad(reason: Message) -> Checked:
    return Checked(False, None, reason)


def _digits(value: str) -> str:
    return re.sub(r"[\s\u00a0-]", "", value)


def _stdnum(module, value: str, wrong_digits: Message, wrong_shape: Message) -> Checked:
    """``value`` checked by a python-stdnum module: its checksum, then its shape."""
    from stdnum import exceptions

    try:
        return Checked(True, module.validate(_digits(value)))
    except exceptions.InvalidChecksum:
        return _bad(wrong_digits)
    except exceptions.ValidationError:
        return _bad(wrong_shape)


def _inn(value: str) -> Checked:
    from stdnum.ru import inn

    return _stdnum(inn, value, _("the INN's check digits do not match"),
                   _("an INN has 10 digits (an organisation) or 12 (a person)"))


def _ogrn(value: str) -> Checked:
    from stdnum.ru import ogrn

    return _stdnum(ogrn, value, _("the OGRN's check digit does not match"),
                   _("an OGRN has 13 digits (an organisation) or 15 (a sole trader)"))


def _kpp(value: str) -> Checked:
    compact = _digits(value).upper()
    if _KPP.fullmatch(compact):
        return Checked(True, compact)
    return _bad(_("a KPP has 9 characters: 4 digits, 2 digits or letters, 3 digits"))


def _bik(value: str) -> Checked:
    compact = _digits(value)
    if _BIK.fullmatch(compact):
        return Checked(True, compact)
    return _bad(_("a BIK has 9 digits and begins with 04"))


def account_key_ok(account: str, bik: str) -> bool:
    """Whether a 20-digit account's control key agrees with its bank's 9-digit BIK."""
    prefix = "0" + bik[4:6] if account.startswith(_CORRESPONDENT) else bik[-3:]
    digits = prefix + account
    return sum(int(d) * _ACCOUNT_WEIGHTS[i % 3] % 10 for i, d in enumerate(digits)) % 10 == 0


def _account(value: str, bik: str | None, correspondent: bool) -> Checked:
    compact = _digits(value)
    if not re.fullmatch(r"[0-9]{20}", compact):
        return _bad(_("a bank account has 20 digits"))
    if correspondent and not compact.startswith(_CORRESPONDENT):
        return _bad(_("a correspondent account begins with 30101"))
    if not correspondent and compact.startswith(_CORRESPONDENT):
        return _bad(_("this is a bank's correspondent account (30101…), not a settlement account"))
    if bik is None or not _BIK.fullmatch(bik):
        return _bad(_("the account cannot be checked without its bank's valid BIK"))
    if not account_key_ok(compact, bik):
        return _bad(_("the account's control key does not match its bank's BIK"))
    return Checked(True, compact)


def _email(value: str) -> Checked:
    from email_validator import EmailNotValidError, validate_email

    try:
        return Checked(True, validate_email(value.strip(), check_deliverability=False).normalized)
    except EmailNotValidError:
        return _bad(_("not an e-mail address"))


def _phone(value: str) -> Checked:
    import phonenumbers

    try:
        number = phonenumbers.parse(value, "RU")
    except phonenumbers.NumberParseException:
        return _bad(_("not a phone number"))
    if not phonenumbers.is_valid_number(number):
        return _bad(_("not a valid phone number"))
    return Checked(True, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


_CHECKS = {"inn": _inn, "ogrn": _ogrn, "kpp": _kpp, "bik": _bik, "email": _email, "phone": _phone}


def parse_date(value: str) -> str | None:
    """The date written in ``value`` as YYYY-MM-DD, or None; with its time where one is
    printed, as printed, its zone not converted (a deadline's "20.12.2026 10:00 (МСК)" is
    "2026-12-20T10:00", so 10:00 and 18:00 differ).
    Day first where it is ambiguous ("01/02/2026" is 1 February), as Russian documents write
    it; a date is found inside a longer phrase ("до 10:00 (МСК) 20.12.2026") too, but never a
    relative one ("завтра")."""
    import dateparser
    from dateparser.search import search_dates

    settings = {"DATE_ORDER": "DMY", "REQUIRE_PARTS": ["day", "month", "year"],
                "RETURN_AS_TIMEZONE_AWARE": False}
    text = _SPACES.sub(" ", value.replace("«", "").replace("»", "")).strip()
    found = dateparser.parse(text, languages=["ru", "en"], settings=settings)
    if found is None:
        hits = search_dates(text, languages=["ru", "en"], settings=settings) or []
        found = next((when for part, when in hits if re.search(r"[0-9]{4}|[0-9][./][0-9]", part)), None)
    elif not re.search(r"[0-9]{4}|[0-9][./][0-9]{1,2}[./][0-9]", text):
        return None  # a relative date ("tomorrow") names no date of its own
    if found is None:
        return None
    times = list(_TIME.finditer(text))
    if len(times) != 1:  # none printed, or several: which is the date's is not said
        return found.date().isoformat()
    hour = int(times[0]["h"])
    hour = hour % 12 + (12 if times[0]["pm"] else 0) if times[0]["pm"] or times[0]["am"] else hour
    return f"{found.date().isoformat()}T{hour:02}:{times[0]['m']}"


def parse_sum(value: str, way: numbers.Convention) -> Decimal | None:
    """A sum as the document writes it, in its convention, without its currency."""
    text = _SPACES.sub(" ", re.sub(r"\(.*?\)", " ", value)).strip()
    kopecks = _KOPECKS.match(text)
    if kopecks:
        rub, kop = kopecks["rub"].strip(), kopecks["kop"].zfill(2)
        decimals = _DECIMALS.search(rub)
        if decimals is None:
            text = f"{rub}{',' if way == 'ru' else '.'}{kop}"
        elif decimals["dec"] == kop:
            text = rub
        else:
            return None  # the figures and the words name different kopecks
    text = _CURRENCY.sub(" ", text).strip().rstrip(".").strip()
    # Spreadsheet cells of 10 and more ungrouped digits are identifiers (models/numbers.py),
    # but a money field's are a sum: grouped here, the number rules read them.
    if ungrouped := _UNGROUPED.fullmatch(text):
        text = f"{int(ungrouped['int']):,}".replace(",", " ") + ungrouped["rest"]
    found = numbers.number(text, way) or numbers.number(text, "en" if way == "ru" else "ru")
    return found.value if found else None


def canonical_sum(value: Decimal, money: bool) -> str:
    """One written form per amount, so the same sum printed two ways is one value: no
    trailing zeros ("1 250 000" and "1250000,0" are 1250000), a sum of money with kopecks
    (1250000.00, 12500.50)."""
    plain = value.normalize()
    if money and plain.as_tuple().exponent > -2:
        plain = plain.quantize(Decimal("0.01"))
    return format(plain, "f")


def same_form(field: TemplateField, normalized: str) -> str:
    """What two checked values of ``field`` are compared by: text without case differences."""
    return normalized.casefold() if field.type in ("string", "list") else normalized


def _by_type(field: TemplateField, value: str, way: numbers.Convention) -> Checked:
    if field.type in ("number", "money"):
        found = parse_sum(value, way)
        if found is None:
            return _bad(_("not a sum or a number"))
        return Checked(True, canonical_sum(found, money=field.type == "money"))
    if field.type == "integer":
        found = parse_sum(value, way)
        if found is None or found != found.to_integral_value():
            return _bad(_("not a whole number"))
        return Checked(True, str(int(found)))
    if field.type == "date":
        found = parse_date(value)
        return Checked(True, found) if found else _bad(_("not a date"))
    if field.type == "enum":
        match = next((v for v in field.values if v.casefold() == value.strip().casefold()), None)
        if match is None:
            return _bad(_("not one of: {values}", values=", ".join(field.values)))
        return Checked(True, match)
    if field.type == "verbatim":
        return Checked(True, value.strip())
    return Checked(True, _SPACES.sub(" ", value).strip())


def check(field: TemplateField, value: Value, way: numbers.Convention = "ru",
          bik: str | None = None) -> Checked:
    """``value`` parsed by the field's type, then checked by its check. ``bik``: the BIK an
    account is checked against (its ``bik_field``'s value). A list is checked item by item."""
    if isinstance(value, list):
        if field.type != "list":
            return _bad(_("a list where one value was expected"))
        items = [check(field.model_copy(update={"type": "string"}), item, way, bik) for item in value]
        bad = next((c for c in items if not c.ok), None)
        return bad or Checked(True, as_text([c.normalized or "" for c in items]))
    if not isinstance(value, str):
        return _bad(_("not a text value"))
    if field.type == "list":
        value = value.strip()
    parsed = _by_type(field, value, way)
    if not parsed.ok or field.check is None:
        return parsed
    if field.check in ACCOUNT_CHECKS:
        return _account(value, bik, correspondent=field.check == "correspondent_account")
    return _CHECKS[field.check](value)
