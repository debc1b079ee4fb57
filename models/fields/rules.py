"""The values a page's recognised text holds, found by rules its template states: how
Tesseract reads fields on the CPU, without a model.

A field is found after one of its ``patterns`` — the phrases printed before its value —
matched ignoring case, spacing, "ё" and the Latin letters OCR mistakes for Cyrillic ones
(a phrase starts and ends at word edges, so "Заказчик" is not found in "заказчика"), where it
is printed as a label: followed by ":" or "№", or starting its line or a part of it — not after
a sentence's word ("5 % НМЦК, что составляет 62 500,00 ₽" names no НМЦК) and not in quotation
marks (a defined term: "именуемое в дальнейшем «Заказчик»"). The patterns are tried in the
template's order, the more particular first ("ИНН заказчика" before "ИНН"), and the first that
gives a value wins. The value is taken from the rest of
the line after the phrase and a ":" or "№", or from the next line where the phrase ends its
line (a form's label above its value), unless that line starts with a label of its own.
The field's type and check say which part of the rest is the value:

- an identifier (``check``) is a word of its shape that passes its check — an INN of 10 or 12
  digits with python-stdnum's checksum, an account of 20 digits whose control key agrees with
  the BIK found on the page, and so on, after any place the label is printed (1C prints "Сч. №"
  before the correspondent account and the settlement one); where none passes, the first of its
  shape is kept, so a misprint shows up as invalid rather than missing;
- a date is the part the date parser reads, with a time printed beside it ("20.12.2026 10:00":
  a deadline's hour counts); a sum is the first amount that is no percentage, preferring one
  with a currency or kopecks, which may follow the sum in words ("2 500 000 (два миллиона
  пятьсот тысяч) рублей 50 копеек"); a money field's bare digits in a sentence ("ст. 44 …
  № 44-ФЗ") are no sum;
- a number printed after a label (``verbatim`` without a check: "№ 245 от …") is one word;
- other text runs to the end of the line or to another field's label on it; a label of two
  letters or fewer ("от") is too common a word to end a value;
- labels joined by slashes share their values joined alike, in the same places:
  "ИНН/КПП 7707083893/773601001", "Серия/номер 4507/123456".

A field without patterns is found by its shape alone where it is the template's only field
with its check (one e-mail address on an invoice); two INNs without labels cannot be told
apart, and a free text without a label (a subject, which runs over several lines) has no
rule at all: ``cannot_find`` says those need a VLM.

Each value keeps its page and its box: the words of the line it was read from (Tesseract's
word boxes, a PDF text layer's letters), a part of a word in proportion to its letters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from models.fields.checks import check, parse_date, parse_sum
from models.fields.result import FoundValue
from models.fields.template import Template, TemplateField
from models.i18n import Message, _
from models.numbers import Convention
from models.text_layer import TextSpan

Box = tuple[int, int, int, int]

# Latin letters OCR reads in place of Cyrillic capitals (and back), lower-cased as the text is
# before they are mapped: both sides are folded alike.
_LOOKALIKES = str.maketrans("abcehkmoptxyё", "авсенкмортхуе")
_LETTER = r"[^\W\d_]"
_LEAD = re.compile(r"[\s:№#–—-]*")
_TRAIL = " \t,;:–—-"
# Labels joined by slashes ("ИНН/КПП") and their values joined alike ("7707083893/773601001").
_JOINED_BEFORE = re.compile(r"(?:[^\s/:]{1,12}\s*/\s*)+$")
_JOINED_AFTER = re.compile(r"(?:\s*/\s*[^\s/:]{1,12})+")
_JOINED_VALUES = re.compile(r"[^\s/]+(?:\s*/\s*[^\s/]+)+")
# A label this short is a common word ("от"): it starts a value, never ends another.
_SHORT_LABEL = 2
# A word in quotation marks is a defined term ("именуемое в дальнейшем «Заказчик»"), not a label.
_QUOTES = "«»\"“”„'"

# Digits are ASCII digits ([0-9], not \d, which takes any script's).
_ACCOUNT = re.compile(r"(?<![0-9])[0-9]{20}(?![0-9])")
_SHAPES = {
    "inn": re.compile(r"(?<![0-9])(?:[0-9]{12}|[0-9]{10})(?![0-9])"),
    "ogrn": re.compile(r"(?<![0-9])(?:[0-9]{15}|[0-9]{13})(?![0-9])"),
    "kpp": re.compile(r"(?<![0-9A-Z])[0-9]{4}[0-9A-Z]{2}[0-9]{3}(?![0-9A-Z])"),
    "bik": re.compile(r"(?<![0-9])04[0-9]{7}(?![0-9])"),
    "account": _ACCOUNT,
    "correspondent_account": _ACCOUNT,
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
}
_MONTHS = r"(?:[а-яё]{3,}|[a-z]{3,})\.?"
# A time printed with a date is part of it: "20.12.2026 10:00", "10:00 (МСК) 20.12.2026".
_CLOCK = r"(?<![0-9:])(?:[01]?[0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?(?![0-9:])"
_DATE = re.compile(
    rf"(?:{_CLOCK}\s*(?:\([^()\n]{{1,12}}\)\s*)?)?(?:"
    rf"«?[0-9]{{1,2}}»?\s+{_MONTHS}\s+[0-9]{{4}}(?:\s*(?:года|г\.?)(?!{_LETTER}))?"
    r"|(?<![0-9])[0-9]{1,2}[./][0-9]{1,2}[./](?:[0-9]{4}|[0-9]{2})(?![0-9])"
    r"|(?<![0-9])[0-9]{4}-[0-9]{2}-[0-9]{2}(?![0-9])"
    rf"|{_MONTHS}\s+[0-9]{{1,2}},?\s+[0-9]{{4}})(?:,?\s*(?:в\s+)?{_CLOCK})?", re.IGNORECASE)
_GAP = "[ \u00a0\u202f\u2009]"
_CURRENCY = r"(?:российск\w*\s+)?руб\w*\.?|₽|RUB|р\.|USD|EUR|€"
# A sum is no percentage ("5 %", "10 процентов"); its currency may follow the sum written out in
# words, its kopecks the currency: "2 500 000 (два миллиона пятьсот тысяч) рублей 50 копеек".
_SUM = re.compile(
    rf"(?<![0-9.,])(?P<int>[0-9]{{1,3}}(?:(?:{_GAP}[0-9]{{3}})+|(?:,[0-9]{{3}})+)|[0-9]+)"
    rf"(?P<dec>[.,][0-9]{{2}})?(?![0-9]|[.,][0-9]|{_GAP}[0-9])(?!\s*(?:%|процент))"
    rf"(?P<unit>(?:\s*\([^()]*\))?\s*(?:{_CURRENCY})(?:\s*[0-9]{{1,2}}\s*коп\w*\.?)?)?", re.IGNORECASE)


@dataclass(frozen=True)
class _Hit:
    """A value found in a line: characters ``start:end`` of ``line``'s text."""

    line: TextSpan
    start: int
    end: int

    @property
    def text(self) -> str:
        return self.line.text[self.start:self.end]


def _fold(text: str) -> str:
    """Lower case, "ё" as "е", Latin look-alikes as Cyrillic: one character for one, so
    positions in the folded text are positions in the text."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text).translate(_LOOKALIKES)


@cache
def _phrase(pattern: str) -> re.Pattern[str]:
    """A label phrase as a regex over folded text: any spacing, word edges at its ends."""
    chars = [re.escape(c) for c in _fold(pattern) if not c.isspace()]
    body = r"\s*".join(chars)
    start = f"(?<!{_LETTER})" if pattern.strip()[:1].isalpha() else ""
    end = f"(?!{_LETTER})" if pattern.strip()[-1:].isalpha() else ""
    return re.compile(start + body + end)


def can_find(field: TemplateField, template: Template) -> bool:
    """Whether the rules can find ``field``: it has label phrases, or a check no other
    field of the template has (its shape alone then says which field a value is)."""
    if field.patterns:
        return True
    return field.check is not None and sum(f.check == field.check for f in template.fields) == 1


def cannot_find(template: Template) -> dict[str, Message]:
    """Why the rules find no value for some of the template's fields, by field name."""
    reason = _("Tesseract's rules cannot find this field: the template gives no phrase printed "
               "before it and no identifier only it has. Read it with a VLM.")
    return {f.name: reason for f in template.fields if not can_find(f, template)}


def find(template: Template, lines: Sequence[TextSpan], page: int) -> list[FoundValue]:
    """The template's values on one page, from its text ``lines`` in reading order."""
    lines = [line for line in lines if line.text.strip()]
    folded = [_fold(line.text) for line in lines]
    found: dict[str, _Hit] = {}
    # A BIK first: an account is the one whose control key agrees with it.
    for field in sorted(template.fields, key=lambda f: f.check != "bik"):
        if not can_find(field, template):
            continue
        bik = found[field.bik_field].text if field.bik_field in found else None

        def passes(value: str, field: TemplateField = field, bik: str | None = bik) -> bool:
            return check(field, value, template.language, bik).ok
        if field.patterns:
            hit = None
            for pattern in field.patterns:
                hits = [h for line, start, end in _windows(template, field, pattern, lines, folded)
                        if (h := _value(field, passes, template.language, line, start, end))]
                # An identifier that passes its check wherever the label is printed: in 1C's bank
                # details "Сч. №" names the correspondent account first, the settlement one next.
                hit = next((h for h in hits if field.check is None or passes(h.text)), hits[0] if hits else None)
                if hit is not None:
                    break
        else:  # no label: only a value that passes the check is taken for the field's
            hit = next((h for line in lines for h in _candidates(field, template.language, line, 0, len(line.text))
                        if passes(h.text)), None)
        if hit is not None:
            found[field.name] = hit
    return [FoundValue(name=f.name, value=found[f.name].text, page=page, bbox=_box(found[f.name]))
            for f in template.fields if f.name in found]


def _short(pattern: str) -> bool:
    return len(_fold(pattern).replace(" ", "")) <= _SHORT_LABEL


def _as_label(text: str, match: re.Match[str], pattern: str, identifier: bool = False) -> bool:
    """Whether the phrase ``match`` found in a line's ``text`` is printed as a label, not as
    words of a sentence: not a term in quotation marks, and either marked as a label (followed
    by ":" or "№") or starting its line or a part of it (after punctuation, a value or a
    capitalised word, as a form's cells read into one line: "ИНН 7707083893 КПП 773601001",
    "г. Москва БИК 044525225"), not after a sentence's word ("5 % от НМЦК, что составляет …").
    A short label ("от") is a word anyway, and so is an ``identifier``'s label in a sentence
    ("зарегистрировано с ИНН 7707083893", "Банк получателя БИК …"): their values' type and
    check alone say whether they are ones."""
    before = text[:match.start()].rstrip()
    quoted = text[match.start() - 1:match.start()], text[match.end():match.end() + 1]
    if all(mark and mark in _QUOTES for mark in quoted):
        return False
    if identifier or _short(pattern) or pattern.rstrip().endswith(("№", ":")) \
            or text[match.end():].lstrip()[:1] in (":", "№"):
        return True
    word = before.rsplit(maxsplit=1)[-1] if before else ""
    return not (word[:1].islower() or word.endswith("%"))


def _windows(template: Template, field: TemplateField, pattern: str, lines: list[TextSpan],
             folded: list[str]) -> Iterator[tuple[TextSpan, int, int]]:
    """Where the field's value may be after its label ``pattern``: a line and a span of its text."""
    labels = [p for f in template.fields for p in f.patterns]
    enders = [p for f in template.fields if f is not field for p in f.patterns if not _short(p)]
    for row, text in enumerate(folded):
        for match in _phrase(pattern).finditer(text):
            if not _as_label(lines[row].text, match, pattern, identifier=field.check is not None):
                continue
            line = lines[row]
            # "ИНН/КПП 7707083893/773601001": this label's place among the labels joined
            # by slashes is its value's place among the values.
            before = _JOINED_BEFORE.search(line.text, 0, match.start())
            after = _JOINED_AFTER.match(line.text, match.end())
            place = before.group().count("/") if before else 0
            joined = place + 1 + (after.group().count("/") if after else 0)
            start = _LEAD.match(line.text, after.end() if after else match.end()).end()
            if start >= len(line.text.rstrip()):  # the label ends its line: the value is under it
                if row + 1 >= len(lines) or any(
                        (m := _phrase(label).match(folded[row + 1])) and _as_label(lines[row + 1].text, m, label)
                        for label in labels):
                    continue
                row, line, start = row + 1, lines[row + 1], 0
            end = min((m.start() for label in enders for m in _phrase(label).finditer(folded[row], start)
                       if _as_label(line.text, m, label)), default=len(line.text))
            if joined > 1 and (values := _JOINED_VALUES.match(line.text, start, end)):
                parts = list(re.finditer(r"[^\s/]+", values.group()))
                if len(parts) == joined:
                    start, end = start + parts[place].start(), start + parts[place].end()
            yield line, start, end


def _value(field: TemplateField, passes: Callable[[str], bool], way: Convention, line: TextSpan,
           start: int, end: int) -> _Hit | None:
    """The field's value in ``line.text[start:end]``, trimmed as its type and check say: an
    identifier that passes its check, else the first of its shape (shown as invalid)."""
    candidates = list(_candidates(field, way, line, start, end))
    if field.check is not None:
        return next((c for c in candidates if passes(c.text)), candidates[0] if candidates else None)
    return candidates[0] if candidates else None


def _candidates(field: TemplateField, way: Convention, line: TextSpan, start: int, end: int) -> Iterator[_Hit]:
    """The parts of ``line.text[start:end]`` that may be the field's value, the likeliest first."""
    text = line.text
    if field.check == "phone":
        import phonenumbers

        for match in phonenumbers.PhoneNumberMatcher(text[start:end], "RU", leniency=phonenumbers.Leniency.POSSIBLE):
            yield _Hit(line, start + match.start, start + match.end)
    elif field.check is not None:
        for match in _SHAPES[field.check].finditer(text, start, end):
            yield _Hit(line, match.start(), match.end())
    elif field.type == "date":
        for match in _DATE.finditer(text, start, end):
            if parse_date(match.group()):
                yield _Hit(line, match.start(), match.end())
    elif field.type in ("money", "number", "integer"):
        sums = [m for m in _SUM.finditer(text, start, end) if parse_sum(m.group(), way) is not None]
        if field.type == "money":
            # Bare digits in a sentence are an article's or a law's number ("ст. 44 … № 44-ФЗ"),
            # a count or a percentage in words: a sum so written is one only on its own.
            alone = text[start:end].strip(_TRAIL + " ")
            sums = [m for m in sums if m["unit"] or m["dec"] or not m["int"].isdigit() or m.group() == alone]
        for match in sorted(sums, key=lambda m: not (m["unit"] or m["dec"])):
            yield _Hit(line, match.start(), match.end())
    elif field.type == "enum":
        folded = _fold(text[start:end])
        for value in field.values:
            at = folded.find(_fold(value))
            if at >= 0:
                yield _Hit(line, start + at, start + at + len(value))
    elif field.type == "verbatim":
        word = re.match(r"\S+", text[start:end])
        if word and word.group().rstrip(_TRAIL):
            yield _Hit(line, start, start + len(word.group().rstrip(_TRAIL)))
    else:
        value = text[start:end].rstrip(_TRAIL)
        if value.strip():
            yield _Hit(line, start, start + len(value))


def _box(hit: _Hit) -> Box | None:
    """Where the value is printed: its words' boxes, a part of a word in proportion to its
    letters; without word boxes, its share of the line's box."""
    line = hit.line
    pieces: list[Box] = []
    offset = 0
    for word in line.words:
        at = line.text.find(word.text, offset)
        if at < 0:
            pieces = []
            break
        offset = at + len(word.text)
        start, end = max(hit.start, at), min(hit.end, offset)
        if start < end:
            pieces.append(_part(word.bbox, (start - at) / len(word.text), (end - at) / len(word.text)))
    if not pieces:
        length = len(line.text) or 1
        return _part(line.bbox, hit.start / length, hit.end / length)
    return (min(p[0] for p in pieces), min(p[1] for p in pieces),
            max(p[2] for p in pieces), max(p[3] for p in pieces))


def _part(box: Box, first: float, last: float) -> Box:
    x0, y0, x1, y1 = box
    return round(x0 + (x1 - x0) * first), y0, round(x0 + (x1 - x0) * last), y1
