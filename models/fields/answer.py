"""A VLM's answer for the fields task, one page → the values that page shows.

The schema (models/fields/template.py) asks for one flat object, ``{name: value or null}``; a
server that constrains decoding gives exactly that. A remote server without structured outputs
answers as it likes, so the answer is read as leniently as it can be without guessing:
- the first JSON object in it, inside ```json fences or prose;
- per field, a value, or the object form ``{"value": …, "bbox": [x1, y1, x2, y2]}`` a model
  may give where it grounds its answers: the box is in the pixels of the image it saw and is
  scaled to the page's as layout boxes are (models/layout.py); a malformed box is ignored and
  the value kept;
- keys that are not fields of the template are left out, counted in one warning;
- a value of the wrong JSON type (a number, true/false, an object where text was asked for) is
  kept as its JSON text with the reason it cannot be taken as printed, so it shows as invalid
  rather than being trusted or lost (a number has lost its printing: "1 250 000,00" or an INN's
  leading zero).
An answer that holds no JSON object (prose, or one cut at max_tokens) gives no values and one
warning; the page keeps its text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from models import layout
from models.fields.result import FoundValue, Value, writable
from models.fields.template import Template
from models.i18n import Message, _, n_

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but tab and line feed


@dataclass
class Read:
    data: dict | None  # the answer's JSON object; None when it held none
    values: list[FoundValue] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)


def find_object(answer: str) -> dict | None:
    """The first JSON object in the answer. After a candidate that does not parse, the search
    goes on past where it broke: the objects nested in a broken one (a cut answer's inner
    ``{"value": …}``) are never taken for the answer. Control characters inside a string are
    let through (``strict=False``): xgrammar's grammar for a string with maxLength allows
    them, so a constrained answer can hold one."""
    decoder = json.JSONDecoder(strict=False)
    i = answer.find("{")
    while i != -1:
        try:
            found, _end = decoder.raw_decode(answer, i)
        except json.JSONDecodeError as exc:
            i = answer.find("{", max(i + 1, exc.pos))
            continue
        except (ValueError, RecursionError):  # nesting no parser should follow, a 5000-digit number
            return None
        if isinstance(found, dict):
            return found
        i = answer.find("{", i + 1)
    return None


def _text(value: str) -> str:
    """A string without control characters (which no document prints), which spreadsheet
    cells refuse; a lone surrogate FoundValue makes writable itself (models/fields/result.py)."""
    return _CONTROL.sub("", value)


def _wrong(raw) -> Message:
    if isinstance(raw, bool):
        return _("the model answered true or false, not the text as printed")
    if isinstance(raw, (int, float)):
        return _("the model answered a number, not the text as printed")
    return _("the model answered an object, not the text as printed")


def _value(raw) -> tuple[Value | None, Message | None]:
    """A value as FoundValue keeps it, and why it cannot be taken as printed (if so)."""
    if raw is None:
        return None, None
    if isinstance(raw, str):
        return _text(raw), None
    if isinstance(raw, list):
        items = [item for item in raw if item is not None]
        wrong = next((item for item in items if not isinstance(item, str)), None)
        values = [_text(item) if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in items]
        return values, (_wrong(wrong) if wrong is not None else None)
    return _text(json.dumps(raw, ensure_ascii=False)), _wrong(raw)


def read(answer: str, template: Template, page: int, seen_size: tuple[int, int],
         page_size: tuple[int, int]) -> Read:
    """The values one page's answer gives, with boxes in ``page_size`` pixels where it gave
    boxes in the ``seen_size`` image's."""
    data = find_object(answer)
    if data is None:
        return Read(None)
    names = {f.name for f in template.fields}
    unknown = sorted(key for key in data if key not in names)
    values = []
    for name, raw in data.items():
        if name not in names:
            continue
        bbox = None
        if isinstance(raw, dict) and "value" in raw:
            box = raw.get("bbox")
            bbox = layout.to_page(box, seen_size, page_size) if layout.is_box(box) else None
            if bbox is not None and (bbox[2] <= bbox[0] or bbox[3] <= bbox[1]):
                bbox = None  # corners swapped, or a box that shrank to a line at the page's edge
            raw = raw["value"]
        value, problem = _value(raw)
        if value is not None:
            values.append(FoundValue(name=name, value=value, page=page, bbox=bbox, problem=problem))
    warnings = [n_("{n} key that is not a field of the template was left out: {names}",
                   "{n} keys that are not fields of the template were left out: {names}",
                   len(unknown), names=", ".join(writable(_text(key))[:40] for key in unknown[:5]))] if unknown else []
    return Read(data, values, warnings)
