"""Text in the language of this session. Streamlit runs every session's script in a thread
of one process, so the language is the session's (``st.session_state``), never the process's:
``t`` renders a marked sentence, and ``tr`` a Message or an error from managers/ and models/,
in the language the session has chosen now."""

from __future__ import annotations

from typing import Any

import streamlit as st

from models.i18n import LANGUAGES, Message, n_, plain_language, translate

LANGUAGE_KEY = "language"
NAMES = {"en": "English", "ru": "Русский"}


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
