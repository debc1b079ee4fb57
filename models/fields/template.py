"""A template: the fields one kind of document holds, as config.yaml's ``templates:`` states them.

Validation names the key that is wrong (an unknown type or check, an enum without values, an
account checked against a field that is not a BIK). A VLM is given the template as a JSON
Schema — every scalar a string as printed, so a value is never rounded or reformatted on the
way, and the project's own rules parse it afterwards (models/fields/checks.py) — and an
instruction in the template's language, the language the documents are written in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.i18n import Localized, _

FieldType = Literal["string", "verbatim", "integer", "number", "money", "date", "enum", "list"]
Check = Literal["inn", "kpp", "ogrn", "bik", "account", "correspondent_account", "email", "phone"]
# Checks of a bank account: its control key depends on its bank's BIK.
ACCOUNT_CHECKS = ("account", "correspondent_account")

# Bounds that keep a constrained answer finite: a model that never closes a string (a small or
# random one) still ends its JSON well inside requests.max_tokens.
MAX_VALUE_CHARS = 300
MAX_LIST_ITEMS = 20


class TemplateField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    label: Localized
    type: FieldType = "string"
    required: bool = False
    check: Check | None = None
    # enum: the values allowed, written as the documents write them.
    values: list[str] = []
    # Phrases printed before the value on the page ("ИНН", "Начальная (максимальная) цена
    # контракта"), matched ignoring case and spacing: how Tesseract's rules find it.
    patterns: list[str] = []
    # check: account or correspondent_account — the field holding the BIK of the account's bank (its control key
    # depends on it).
    bik_field: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TemplateField:
        if self.type == "enum" and not self.values:
            raise ValueError(_("an enum field needs its values"))
        if self.values and self.type != "enum":
            raise ValueError(_("values are only for enum fields"))
        if self.check in ACCOUNT_CHECKS and not self.bik_field:
            raise ValueError(_("an account is checked with its bank's BIK: name that field in bik_field"))
        if self.bik_field and self.check not in ACCOUNT_CHECKS:
            raise ValueError(_("bik_field is only for fields with check: account or correspondent_account"))
        return self


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Localized
    # The documents' language: the model's instruction is written in it.
    language: Literal["ru", "en"] = "ru"
    fields: Annotated[list[TemplateField], Field(min_length=1)]

    @model_validator(mode="after")
    def _names(self) -> Template:
        names = [f.name for f in self.fields]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(_("field {name} is written twice", name=twice[0]))
        by_name = {f.name: f for f in self.fields}
        for f in self.fields:
            if f.bik_field and (by_name.get(f.bik_field) is None or by_name[f.bik_field].check != "bik"):
                raise ValueError(_("{name}: bik_field {other} is not a field with check: bik",
                                   name=f.name, other=f.bik_field))
        return self

    def field(self, name: str) -> TemplateField:
        return next(f for f in self.fields if f.name == name)


def _value_schema(field: TemplateField) -> dict:
    text = {"type": "string", "maxLength": MAX_VALUE_CHARS}
    if field.type == "enum":
        value: dict = {"type": "string", "enum": list(field.values)}
    elif field.type == "list":
        value = {"type": "array", "items": text, "maxItems": MAX_LIST_ITEMS}
    else:
        value = text
    return {"anyOf": [value, {"type": "null"}]}


def json_schema(template: Template) -> dict:
    """The answer's JSON Schema: every field present, null where the page does not show it."""
    return {"type": "object",
            "properties": {f.name: _value_schema(f) for f in template.fields},
            "required": [f.name for f in template.fields],
            "additionalProperties": False}


# The most bytes one character of a string can take in a constrained answer: a "\uXXXX"
# escape (one character to the grammar's maxLength), more than the 4 bytes of any character
# written as itself.
_ESCAPED_CHARS = 6


def answer_tokens(template: Template) -> int:
    """The most tokens an answer held to the template's schema can take, without free
    whitespace (local mode's grammar, vLLM's ``disable_any_whitespace``), its end-of-sequence
    token included: every byte a token of its own (no byte-level BPE token is shorter), every
    string character escaped, every string and list at its bound. requests.max_tokens at least
    this never cuts a constrained answer."""
    text = 2 + _ESCAPED_CHARS * MAX_VALUE_CHARS  # a string in its quotes
    chars = 2 - 2  # the braces, less the ", " the last field does not have
    for f in template.fields:
        if f.type == "enum":
            value = max(len(json.dumps(v)) for v in f.values)
        elif f.type == "list":
            value = 2 + MAX_LIST_ITEMS * text + (MAX_LIST_ITEMS - 1) * 2  # ", " between items
        else:
            value = text
        chars += len(json.dumps(f.name)) + 2 + max(value, len("null")) + 2  # '"name": value, '
    return chars + 1


# The model is told in the documents' language what each field is; these are prompts, not
# interface text, so they are not in the translation catalogs.
_INSTRUCTION = {
    "ru": ("Прочитай документ на изображении и заполни поля. Ответь одним объектом JSON с ключами "
           "ниже. Значение пиши так, как оно напечатано в документе, без пересчёта и перевода; "
           "если поля на странице нет, пиши null.\n"),
    "en": ("Read the document in the image and fill in the fields. Answer with one JSON object "
           "with the keys below. Write each value exactly as it is printed in the document, "
           "without converting or translating it; where the page does not show a field, write null.\n"),
}
_HINTS = {
    "ru": {"verbatim": "точно как напечатано", "integer": "целое число", "number": "число",
           "money": "сумма, как напечатана", "date": "дата, как напечатана", "list": "список строк",
           "enum": "одно из: {values}"},
    "en": {"verbatim": "exactly as printed", "integer": "a whole number", "number": "a number",
           "money": "a sum, as printed", "date": "a date, as printed", "list": "a list of strings",
           "enum": "one of: {values}"},
}


def instruction(template: Template) -> str:
    lang = template.language
    lines = [_INSTRUCTION[lang]]
    for f in template.fields:
        hint = _HINTS[lang].get(f.type, "").format(values=", ".join(f.values))
        lines.append(f"- {f.name}: {f.label.render(lang)}" + (f" ({hint})" if hint else ""))
    lines.append("\nJSON Schema: " + json.dumps(json_schema(template), ensure_ascii=False))
    return "\n".join(lines)


def kept(templates: Mapping[str, Template], key: str | None, names: list[str]) -> Template | None:
    """The template ``key`` a run was read with, where the config still has it with the run's
    fields (``names``, in order): only then can the run's values be checked and corrected again."""
    template = templates.get(key or "")
    return template if template is not None and [f.name for f in template.fields] == names else None
