"""The values found on a document's pages → one checked value per template field.

A field's values are compared by their canonical form (a date as YYYY-MM-DD, a sum as its
digits, text without case and spacing differences): where the pages agree the first page's
value is kept, with every page it was found on; where they disagree the field is a conflict
and every value stays in ``found`` for a person to choose — nothing is picked silently. A
value that does not parse is kept beside the ones that do, so it shows up as invalid, not lost.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.fields.checks import Checked, check, same_form
from models.fields.result import FieldResult, FoundValue, Value
from models.fields.template import Template, TemplateField
from models.i18n import Message, _


def _key(field: TemplateField, value: Value, checked: Checked) -> str:
    return same_form(field, checked.normalized) if checked.normalized is not None else repr(value)


def _checked(field: TemplateField, value: Value, template: Template, bik: str | None) -> Checked:
    return check(field, value, template.language, bik)


def _one(field: TemplateField, found: list[FoundValue], template: Template, bik: str | None,
         missing: Message | None) -> FieldResult:
    if not found:
        return FieldResult(name=field.name, status="missing",
                           reason=missing or (_("required, and found on no page") if field.required
                                              else _("found on no page")))
    groups: dict[str, tuple[Checked, list[FoundValue]]] = {}
    for value in found:
        checked = Checked(False, None, value.problem) if value.problem else _checked(field, value.value, template, bik)
        groups.setdefault(_key(field, value.value, checked), (checked, []))[1].append(value)
    first = found[0]
    if len(groups) > 1:
        pages = ", ".join(str(p) for p in sorted({v.page + 1 for v in found}))
        return FieldResult(name=field.name, status="conflict", found=found, page=first.page, bbox=first.bbox,
                           reason=_("{n} different values on pages {pages}", n=str(len(groups)), pages=pages))
    checked, _values = next(iter(groups.values()))
    return FieldResult(name=field.name, status="valid" if checked.ok else "invalid", value=first.value,
                       normalized=checked.normalized, reason=checked.reason, page=first.page,
                       bbox=first.bbox, found=found)


def collect(template: Template, found: Iterable[FoundValue],
            missing: dict[str, Message] | None = None) -> list[FieldResult]:
    """One result per template field, in the template's order. ``missing``: why a field no
    page held was not found, where the engine knows (Tesseract's rules cannot find it)."""
    by_name: dict[str, list[FoundValue]] = {f.name: [] for f in template.fields}
    for value in found:
        if value.name in by_name and _present(value.value):
            by_name[value.name].append(value)
    results: dict[str, FieldResult] = {}
    # A BIK is settled first: an account's control key is checked against it.
    order = sorted(template.fields, key=lambda f: f.check != "bik")
    for field in order:
        bik = results.get(field.bik_field) if field.bik_field else None
        results[field.name] = _one(field, by_name[field.name], template,
                                   bik.normalized if bik and bik.status == "valid" else None,
                                   (missing or {}).get(field.name))
    return [results[f.name] for f in template.fields]


def correct(template: Template, fields: list[FieldResult], name: str, value: Value | None) -> list[FieldResult]:
    """The fields with a person's value for ``name``, checked like a value read; what was read
    stays in ``original`` (the first correction's, however often it is corrected)."""
    field = template.field(name)
    old = next(f for f in fields if f.name == name)
    original = old.original if old.corrected else (old.value if old.status != "conflict" else None)
    if value is None or not _present(value):
        new = FieldResult(name=name, status="missing", reason=_("emptied by hand"))
    else:
        bik_result = next((f for f in fields if f.name == field.bik_field), None)
        bik = bik_result.normalized if bik_result and bik_result.status == "valid" else None
        checked = _checked(field, value, template, bik)
        new = FieldResult(name=name, status="valid" if checked.ok else "invalid", value=value,
                          normalized=checked.normalized, reason=checked.reason)
    new = new.model_copy(update={"corrected": True, "original": original, "found": old.found})
    result = [new if f.name == name else f for f in fields]
    if field.check == "bik":  # the accounts checked against this BIK are checked again
        for f in template.fields:
            if f.bik_field == name:
                current = next(r for r in result if r.name == f.name)
                if current.status in ("valid", "invalid") and current.value is not None:
                    checked = _checked(f, current.value, template, new.normalized if new.status == "valid" else None)
                    result = [r.model_copy(update={"status": "valid" if checked.ok else "invalid",
                                                    "normalized": checked.normalized, "reason": checked.reason})
                              if r.name == f.name else r for r in result]
    return result


def _present(value: Value) -> bool:
    return any(v.strip() for v in value) if isinstance(value, list) else bool(value.strip())
