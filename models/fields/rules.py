"""The values a page's recognised text holds, found by rules its template states: how
Tesseract reads fields on the CPU, without a model.

A field is found after one of its ``patterns`` — the phrases printed before its value —
matched ignoring case, spacing, "ё" and the Latin letters OCR mistakes for Cyrillic ones
(a phrase starts and ends at word edges, so "Заказчик" is not found in "заказчика"). The
patterns are tried in the template's order, the more particular first ("ИНН заказчика"
before "ИНН"), and the first that gives a value wins. The value is taken from the rest of
the line after the phrase and a ":" or "№", or from the next line where the phrase ends its
line (a form's label above its value), unless that line starts with a label of its own.
The field's type and check say which part of the rest is the value:

- an identifier (``check``) is a word of its shape that passes its check — an INN of 10 or 12
  digits with python-stdnum's checksum, an account of 20 digits whose control key agrees with
  the BIK found on the page, and so on; where none passes, the first of its shape is kept, so a
  misprint shows up as invalid rather than missing;
- a date is the part the date parser reads (the time after it is not the date), a sum is the
  first amount that is no percentage, preferring one with a currency or kopecks;
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

_SHAPES = {
    "inn": re.compile(r"(?<!\d)(?:\d{12}|\d{10})(?!\d)"),
    "ogrn": re.compile(r"(?<!\d)(?:\d{15}|\d{13})(?!\d)"),
    "kpp": re.compile(r"(?<![\dA-Z])\d{4}[\dA-Z]{2}\d{3}(?![\dA-Z])"),
    "bik": re.compile(r"(?<!\d)04\d{7}(?!\d)"),
    "account": re.compile(r"(?<!\d)\d{20}(?!\d)"),
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
}
_MONTHS = r"(?:[а-яё]{3,}|[a-z]{3,})\.?"
_DATE = re.compile(
    rf"«?\d{{1,2}}»?\s+{_MONTHS}\s+\d{{4}}(?:\s*(?:года|г\.?)(?!{_LETTER}))?"
    r"|(?<!\d)\d{1,2}[./]\d{1,2}[./](?:\d{4}|\d{2})(?!\d)"
    r"|(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)"
    rf"|{_MONTHS}\s+\d{{1,2}},?\s+\d{{4}}", re.IGNORECASE)
_GAP = "[ \u00a0\u202f\u2009]"
_SUM = re.compile(
    rf"(?<![\d.,])(?P<int>\d{{1,3}}(?:(?:{_GAP}\d{{3}})+|(?:,\d{{3}})+)|\d+)(?P<dec>[.,]\d{{2}})?"
    rf"(?![\d%]|[.,]\d|{_GAP}\d)(?!\s*%)"
    rf"(?P<unit>\s*(?:руб\w*\.?|₽|RUB|р\.|USD|EUR|€)(?:\s*\d{{2}}\s*коп\w*\.?)?)?", re.IGNORECASE)


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
            hit = next((h for line, start, end in _windows(template, field, lines, folded)
                        if (h := _value(field, passes, template.language, line, start, end))), None)
        else:  # no label: only a value that passes the check is taken for the field's
            hit = next((h for line in lines for h in _candidates(field, template.language, line, 0, len(line.text))
                        if passes(h.text)), None)
        if hit is not None:
            found[field.name] = hit
    return [FoundValue(name=f.name, value=found[f.name].text, page=page, bbox=_box(found[f.name]))
            for f in template.fields if f.name in found]


def _windows(template: Template, field: TemplateField, lines: list[TextSpan],
             folded: list[str]) -> Iterator[tuple[TextSpan, int, int]]:
    """Where the field's value may be, after each of its labels: a line and a span of its
    text, in the order its patterns are tried."""
    labels = [_phrase(p) for f in template.fields for p in f.patterns]
    enders = [_phrase(p) for f in template.fields if f is not field for p in f.patterns
              if len(_fold(p).replace(" ", "")) > _SHORT_LABEL]
    for pattern in field.patterns:
        for row, text in enumerate(folded):
            for match in _phrase(pattern).finditer(text):
                line = lines[row]
                # "ИНН/КПП 7707083893/773601001": this label's place among the labels joined
                # by slashes is its value's place among the values.
                before = _JOINED_BEFORE.search(line.text, 0, match.start())
                after = _JOINED_AFTER.match(line.text, match.end())
                place = before.group().count("/") if before else 0
                joined = place + 1 + (after.group().count("/") if after else 0)
                start = _LEAD.match(line.text, after.end() if after else match.end()).end()
                if start >= len(line.text.rstrip()):  # the label ends its line: the value is under it
                    if row + 1 >= len(lines) or any(label.match(folded[row + 1]) for label in labels):
                        continue
                    row, line, start = row + 1, lines[row + 1], 0
                end = min((m.start() for label in enders for m in label.finditer(folded[row], start)),
                          default=len(line.text))
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
