"""What a run keeps of a template's fields: the values found on each page, and per field
the one value chosen, its status and why.

A status is one of: ``valid`` (parsed by its type and, where the field has a check, checked),
``invalid`` (with the reason), ``missing`` (found on no page), ``conflict`` (found on several
pages with different values: all of them are kept in ``found``, none is picked silently).
A person's correction keeps the value read beside it (``original``).

Every value is made writable here, once, whichever way it came (a VLM's JSON, Tesseract's
text, a person's correction): JSON's "\\ud800" decodes to a lone surrogate, which no UTF-8
file, history row or sheet can hold, so it becomes "?" as it enters.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel

from models.i18n import Message, _


def writable(text: str) -> str:
    """``text`` with each lone surrogate as "?": what UTF-8 can hold."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


Status = Literal["valid", "invalid", "missing", "conflict"]
Text = Annotated[str, AfterValidator(writable)]
Value = Text | list[Text]
# A list field's items in one text: a table cell, a sheet's cell, what a person types back.
LIST_SEPARATOR = "; "
STATUS_WORDS: dict[str, Message] = {"valid": _("valid"), "invalid": _("invalid"), "missing": _("missing"),
                                    "conflict": _("conflict")}


class FoundValue(BaseModel):
    """One value of one field, where it was read: a page index and, where known, its box in
    the page's result pixels."""

    name: str
    value: Value
    page: int
    bbox: tuple[int, int, int, int] | None = None
    # Why the value cannot be taken as printed, whatever it parses as: a model without
    # structured outputs gave a number or an object where text was asked for.
    problem: Message | None = None


class FieldResult(BaseModel):
    name: str
    status: Status
    value: Value | None = None
    # The value in one canonical form (a date as YYYY-MM-DD, a sum as digits with a point),
    # what conflicts are judged on and what a sheet's cell holds; None when it does not parse.
    normalized: Text | None = None
    reason: Message | None = None
    page: int | None = None
    bbox: tuple[int, int, int, int] | None = None
    found: list[FoundValue] = []
    # Set once a person corrects the value: what was read before (None: nothing was).
    corrected: bool = False
    original: Value | None = None


def status_text(field: FieldResult) -> Message:
    """A field's status as people read it: the word, and why where there is a reason."""
    word = STATUS_WORDS[field.status]
    return _("{status}: {reason}", status=word, reason=field.reason) if field.reason else word


def as_text(value: Value | None) -> str:
    """A value as one text: a list's items joined; nothing, ""."""
    if value is None:
        return ""
    return LIST_SEPARATOR.join(value) if isinstance(value, list) else value
