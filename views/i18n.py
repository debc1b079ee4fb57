"""Text in the language of this session. Streamlit runs every session's script in a thread
of one process, so the language is the session's (``st.session_state``), never the process's:
``t`` renders a marked sentence, and ``tr`` a Message or an error from managers/ and models/,
in the language the session has chosen now."""

from __future__ import annotations

import re

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import streamlit as st

from models.config import MODE_LABELS
from models.i18n import LANGUAGES, Message, n_, number, plain_language, translate

LANGUAGE_KEY = "language"
NAMES = {"en": "English", "ru": "Русский"}
# The selector's label, in both languages at once: whoever cannot read the one on screen
# still finds the way back.
LANGUAGE_LABEL = "Language / Язык"


_LIVE = re.compile(r"([\\\[\]<>])")  # what starts a link, an image or HTML in Markdown


def default_language(setting: str) -> str:
    """``ui.language``: a language, or ``auto`` for the browser's (none known: English)."""
    if setting in LANGUAGES:
        return setting
    try:
        return plain_language(st.context.locale)
    except Exception:  # no browser behind this session (AppTest, bare mode)
        return "en"


def language() -> str:
    return st.session_state.get(LANGUAGE_KEY) or "en"


def t(msgid: str, **params: Any) -> str:
    """Mark ``msgid`` for translation and render it now, in the session's language."""
    return Message(msgid, params).render(language())


def tn(singular: str, plural: str, n: int, **params: Any) -> str:
    """A sentence with a count, in the session's language and its plural rule."""
    return n_(singular, plural, n, **params).render(language())


def tr(value: Any) -> str:
    """A Message, an error raised with one, or plain text, in the session's language."""
    return translate(value, language())


def said(value: Any) -> str:
    """A message for st.error, st.warning, st.info or st.caption, which read Markdown: its
    parameters can be anyone's words (a model server's refusal, a file name), so whatever would
    make a link, an image or HTML of them is escaped. Emphasis marks are left: they cost looks,
    not safety, and config keys such as max_image_pixels read as written."""
    return _LIVE.sub(r"\\\1", tr(value))


def shown_as(options: Iterable[Any], label: Callable[[Any], str]) -> Callable[[Any], str]:
    """A ``format_func`` whose labels are made now, in this run's language: Streamlit (and
    AppTest) may call it again after the run, where the session's language cannot be read.
    A choice survives a change of language although its label changes: Streamlit reads the
    label the browser sends back with the previous run's labels, before the script runs."""
    names = {option: label(option) for option in options}
    return lambda option: names.get(option, str(option))


def local(text: Any) -> str:
    """Text from the config (a model's name or description, a task's label): plain text as it
    is, a ``models.i18n.Localized`` or a plain ``{en: …, ru: …}`` in the session's language
    (English where that one is missing)."""
    if isinstance(text, Mapping):
        return text.get(language()) or text.get("en") or next(iter(text.values()), "")
    return tr(text)


def mode_name(mode: str) -> str:
    """A mode as people name it: vLLM, Local, CPU (models.config.MODE_LABELS), in this language."""
    return tr(MODE_LABELS.get(mode, mode))


def num(value: float, digits: int | None = None) -> str:
    """A number as the session's language writes it (``1 234,5`` in Russian)."""
    return number(value, language(), digits)


def percent(fraction: float | None, digits: int = 2) -> str:
    """A fraction as a percentage in the session's language ("12.34%", "12,34 %"); "-" for None."""
    if fraction is None:
        return "-"
    return t("{value:.2f}%", value=100 * fraction) if digits == 2 else t("{value:.1f}%", value=100 * fraction)
