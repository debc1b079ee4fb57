"""How well a run's fields match a document's true fields (``NAME.fields.json`` beside it:
``{field: value as printed, …}``, a field the document does not show absent or null).

For one field over the documents that have a truth file, a document's reading of the field
is *given* when the run has a value for it (valid, invalid or a conflict), and *right* when
it is given, the truth has the field, and the two are the same value. Then:

- precision = right / given: of the values the model gave, how many are right;
- recall = right / truths (documents whose truth has the field): of the values on the
  pages, how many it found right;
- exact-match rate = exact / documents, where a document is *exact* for the field when the
  value is right or when the truth lacks the field and the model gave none: how often the
  cell of the sheet needs no correction. A value given where the truth has none lowers
  precision and exact match, not recall.

A conflict is given and never right: the model did not settle on the true value, and a
person has to choose. Rates with nothing to divide by (no value given, no truth present)
are None, not 0 or 1. Counts add up, so fields and documents are micro-averaged: all
fields together are the sums of every field's counts.

Two values are the same when both check and their checked forms agree — the form the
template's type and check give (models/fields/checks.py: "1 250 000,00 руб." and
"1250000,00" are the sum 1250000.00, "7707 083 893" and "7707083893" one INN; text without
case differences, as conflicts are judged) — or, where either does not check, when their
texts agree with case and runs of whitespace folded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models import metrics
from models.errors import InputError
from models.fields.checks import check, same_form
from models.fields.result import FieldResult, Value, as_text
from models.fields.template import Template, TemplateField
from models.i18n import _
from models.result import OCRResult

Truth = dict[str, Value | None]


@dataclass(frozen=True)
class Counts:
    """One field's tally over documents; ``a + b`` tallies both."""

    documents: int = 0
    truths: int = 0
    given: int = 0
    right: int = 0
    exact: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.documents + other.documents, self.truths + other.truths,
                      self.given + other.given, self.right + other.right, self.exact + other.exact)

    @property
    def precision(self) -> float | None:
        return self.right / self.given if self.given else None

    @property
    def recall(self) -> float | None:
        return self.right / self.truths if self.truths else None

    @property
    def exact_match(self) -> float | None:
        return self.exact / self.documents if self.documents else None


def total(counts: dict[str, Counts]) -> Counts:
    """All fields together (micro-averaged)."""
    return sum(counts.values(), Counts())


def _folded(value: Value) -> str:
    return metrics.normalise(as_text(value)).casefold()


def same(field: TemplateField, truth: Value, truth_normalized: str | None, read: FieldResult) -> bool:
    """Whether the value read is the true one (see the module's docstring)."""
    if read.value is None or read.status == "conflict":
        return False
    if truth_normalized is not None and read.normalized is not None:
        return same_form(field, truth_normalized) == same_form(field, read.normalized)
    return _folded(truth) == _folded(read.value)


def _truth_forms(template: Template, truth: Truth) -> dict[str, str | None]:
    """Each true value's checked form, an account checked against the truth's own BIK."""
    forms: dict[str, str | None] = {}
    for field in sorted(template.fields, key=lambda f: f.check != "bik"):
        if field.name in truth:
            bik = forms.get(field.bik_field) if field.bik_field else None
            forms[field.name] = check(field, truth[field.name], template.language, bik).normalized
    return forms


def score_fields(template: Template, result: OCRResult, truth: Truth) -> dict[str, Counts]:
    """The run's fields against one document's truth: a tally per template field. A true
    value that is None or blank is a field the document does not show."""
    truth = {name: value for name, value in truth.items() if value is not None and _folded(value)}
    read = {f.name: f for f in result.fields}
    forms = _truth_forms(template, truth)
    counts = {}
    for field in template.fields:
        found = read.get(field.name)
        given = found is not None and found.status != "missing"
        present = field.name in truth
        right = present and given and same(field, truth[field.name], forms[field.name], found)
        counts[field.name] = Counts(documents=1, truths=int(present), given=int(given), right=int(right),
                                    exact=int(right or (not present and not given)))
    return counts


def read_truth(path: Path, template: Template) -> Truth | None:
    """The true fields in ``path`` (UTF-8 JSON), without the absent ones; None if there is no
    such file. A field the template lacks or a value that is not text is one sentence."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(_("'{name}' is not a JSON object in UTF-8 ({reason}); fix it and run again.",
                           name=path.name, reason=str(exc)[:200])) from None
    except OSError as exc:
        raise InputError(_("'{path}' cannot be read: {reason}.", path=str(path), reason=exc.strerror)) from None
    if not isinstance(data, dict):
        raise InputError(_("'{name}' must be one JSON object: {{field: value as printed}}.", name=path.name))
    names = {f.name for f in template.fields}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(_("'{name}' has fields the template does not: {unknown}; its fields are: {known}.",
                           name=path.name, unknown=", ".join(unknown), known=", ".join(sorted(names))))
    truth: Truth = {}
    for key, value in data.items():
        if value is not None and not (isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise InputError(_("'{name}': the value of {field} must be text as printed (in quotes), a list "
                               "of texts, or null.", name=path.name, field=key))
        if value is not None and _folded(value):  # else the document does not show it
            truth[key] = value
    return truth
