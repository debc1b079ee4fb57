"""Messages a person reads, in Russian or English.

Streamlit sessions are threads of one process, so a process-wide language (``setlocale``,
``gettext.install``) would switch every session at once. Instead a message travels as a
``Message``: its English msgid, a ``str.format`` template with named placeholders, plus its
parameters; the edge (a view, the CLI) renders it in the language of that session. Results keep
messages in that form, so a run reopened from the history reads in the language chosen now.

A ``Message`` *is* its English text (a ``str``), so code that logs it, compares it or shows
``str(error)`` goes on working unchanged.

Catalogs are gettext's: ``locales/<lang>/LC_MESSAGES/chatvlmllm.po`` in the repository, compiled
into the git-ignored ``build/locales`` by ``scripts/install.sh`` and, when missing or older than
their ``.po``, on first use. ``python -m models.catalogs`` re-extracts and updates them.
"""

from __future__ import annotations

import gettext
import numbers
import os
import re
import string
import tempfile
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "ru")
DOMAIN = "chatvlmllm"
# The marking functions, as Babel's extractor names them (also `pybabel extract -k _ -k n_:1,2
# -k N_ -k t -k tn:1,2`): _ and n_ make a Message here, N_ marks a msgid kept as a constant;
# t and tn (views/i18n.py) render one at once.
KEYWORDS = {"_": None, "n_": (1, 2), "N_": None, "t": None, "tn": (1, 2)}
ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "locales"  # <lang>/LC_MESSAGES/chatvlmllm.po and the template chatvlmllm.pot
COMPILED = ROOT / "build" / "locales"  # the .mo files, built from SOURCES, never committed

_PRIMITIVE = (str, int, float, type(None))
_FIXED = re.compile(r"\.(\d+)f")


class Message(str):
    """One sentence in English (the ``str`` value) that can be rendered in any language.

    ``id`` is the msgid; ``plural`` and ``n`` pick a plural form (``n`` is also the param
    ``n``). Params are plain values or nested Messages, which are rendered in the same
    language; anything else (a path, an OS error) is kept as its text.
    """

    id: str
    params: dict[str, Any]
    plural: str | None
    n: int | None

    def __new__(cls, id: str, params: Mapping[str, Any] | None = None,
                plural: str | None = None, n: int | None = None) -> Message:
        params = {key: _param(value) for key, value in (params or {}).items()}
        if plural is not None:
            params["n"] = n
        template = id if plural is None or n == 1 else plural
        self = super().__new__(cls, _fill(template, params, "en", fallback=template))
        self.id, self.params, self.plural, self.n = id, params, plural, n
        return self

    def __reduce__(self):
        return Message, (self.id, self.params, self.plural, self.n)

    def __repr__(self) -> str:
        return f"Message({self.id!r}, {self.params!r})"

    def render(self, lang: str) -> str:
        if not self.id:
            return ""  # gettext("") is the catalog's header, not an empty text
        t = translations(lang)
        template = t.gettext(self.id) if self.plural is None else t.ngettext(self.id, self.plural, self.n)
        english = self.id if self.plural is None or self.n == 1 else self.plural
        return _fill(template, self.params, lang, fallback=english)

    # --- as a pydantic field: a plain str validates too (old history rows, external JSON) -----

    def raw(self) -> dict[str, Any]:
        """The stored form: id and params (nested Messages as dicts), so any language can render it."""
        params = {k: v.raw() if isinstance(v, Message) else v for k, v in self.params.items()}
        return {"id": self.id, "params": params, "plural": self.plural, "n": self.n}

    @classmethod
    def of(cls, value: Any) -> Message:
        """A Message from what may be stored or given: a Message, its raw dict or plain text."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and isinstance(value.get("id"), str):
            params = {k: cls.of(v) if isinstance(v, Mapping) else v for k, v in (value.get("params") or {}).items()}
            return cls(value["id"], params, value.get("plural"), value.get("n"))
        raise ValueError("expected a message: text, or {id, params, plural, n}")

    @staticmethod
    def _serialize(value: str, info: Any) -> Any:
        """By default the English text (the JSON export contract); ``context={"messages":
        "raw"}`` gives the stored form, ``context={"lang": "ru"}`` the text in that language."""
        message = Message.of(value)  # plain text put on a model by hand serialises the same way
        context = info.context or {}
        if context.get("messages") == "raw":
            return message.raw()
        if "lang" in context:
            return message.render(context["lang"])
        return str(message)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema
        return core_schema.no_info_plain_validator_function(
            cls.of, serialization=core_schema.plain_serializer_function_ser_schema(
                cls._serialize, info_arg=True))

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string"}


def _(msgid: str, **params: Any) -> Message:
    """Mark ``msgid`` for translation; ``params`` fill its ``{placeholders}``."""
    return Message(msgid, params)


def n_(singular: str, plural: str, n: int, **params: Any) -> Message:
    """Mark a sentence with a count: the language's plural rule picks the form; ``{n}`` is the count."""
    return Message(singular, params, plural, n)


def N_(msgid: str) -> str:
    """Mark a msgid kept as a constant (to recognise its Messages by ``id``); returned as it is."""
    return msgid


class Localized(str):
    """A text people read that comes from config.yaml, not from the code: one string, or one
    per language (``{en: …, ru: …}``). As a ``str`` it is the English (or the only) text;
    ``render`` gives the language's own where the config has it. gettext cannot carry these:
    a person adding a model writes its Russian description beside the English one."""

    texts: dict[str, str]

    def __new__(cls, value: str | Mapping[str, str]) -> Localized:
        texts = {"en": value} if isinstance(value, str) else dict(value)
        unknown = sorted(set(texts) - set(LANGUAGES))
        if unknown or not texts or not all(isinstance(v, str) for v in texts.values()):
            raise ValueError(_("expected a text, or one per language ({languages}), not {value!r}",
                               languages=", ".join(LANGUAGES), value=str(value)))
        self = super().__new__(cls, texts.get("en") or next(iter(texts.values())))
        self.texts = texts
        return self

    def __reduce__(self):
        return Localized, (self.texts,)

    def render(self, lang: str) -> str:
        return self.texts.get(lang) or str(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema
        return core_schema.no_info_plain_validator_function(
            lambda value: value if isinstance(value, Localized) else cls(value),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda value: value.texts))


def translate(value: Any, lang: str) -> str:
    """What to show: a Message (or an error raised with one), or a text from the config, in
    ``lang``; other text as it is."""
    if isinstance(value, (Message, Localized)):
        return value.render(lang)
    if isinstance(value, BaseException):
        first = value.args[0] if value.args else None
        return first.render(lang) if isinstance(first, Message) else str(value)
    return "" if value is None else str(value)


def _param(value: Any) -> Any:
    """A param as it can be stored (JSON): an error becomes its Message or its text, a path its text."""
    if isinstance(value, BaseException):
        first = value.args[0] if value.args else None
        return first if isinstance(first, Message) else str(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)  # numpy's integers too: still a number, formatted for the language
    if isinstance(value, numbers.Real):
        return float(value)
    return value if isinstance(value, _PRIMITIVE) else str(value)


# --- filling a template -----------------------------------------------------------------------

class _Formatter(string.Formatter):
    """str.format where numbers follow the language (``1,5`` in Russian) and nested Messages
    are rendered in it too."""

    def __init__(self, lang: str):
        self.lang = lang

    def format_field(self, value: Any, spec: str) -> str:
        if isinstance(value, Message):
            return format(value.render(self.lang), spec)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            fixed = _FIXED.fullmatch(spec)
            if fixed or spec in ("", "g", "d"):
                return number(value, self.lang, int(fixed[1]) if fixed else None)
        return super().format_field(value, spec)


def _fill(template: str, params: Mapping[str, Any], lang: str, fallback: str) -> str:
    """``template`` filled in; a translation whose placeholders do not match falls back to English.
    Without params the text is taken as it is: plain text (an old history row) is no template."""
    if not params:
        return template
    for text in (template, fallback):
        try:
            return _Formatter(lang).vformat(text, (), params)
        except (KeyError, IndexError, ValueError, TypeError):
            continue
    try:  # a value that does not fit its format spec (None for {seconds:.1f}): shown as it is
        return _AsText().vformat(fallback, (), params)
    except (KeyError, IndexError, ValueError):
        return fallback


class _AsText(string.Formatter):
    def format_field(self, value: Any, spec: str) -> str:
        return str(value)


def number(value: float, lang: str, digits: int | None = None) -> str:
    """A number as ``lang`` writes it: ``1 234,5`` in Russian; ``digits``: exactly that many decimals."""
    try:
        from babel.numbers import format_decimal
    except ImportError:
        return f"{value:,.{digits}f}" if digits is not None else f"{value:,}"
    pattern = None if digits is None else "#,##0" + ("." + "0" * digits if digits else "")
    return format_decimal(value, format=pattern, locale=lang if lang in LANGUAGES else "en")


def datetime_text(moment: datetime, lang: str, format: str = "short") -> str:
    """A date and time as ``lang`` writes it (Babel's ``short``: ``28.11.2026, 08:23`` in Russian)."""
    try:
        from babel.dates import format_datetime
    except ImportError:
        return moment.strftime("%Y-%m-%d %H:%M")
    return format_datetime(moment, format, tzinfo=moment.tzinfo, locale=lang if lang in LANGUAGES else "en")


# --- choosing the language --------------------------------------------------------------------

def plain_language(tag: str | None) -> str:
    """One of LANGUAGES for a locale tag as browsers and environments give it (``ru-RU``,
    ``ru_RU.UTF-8``, ``en-US``, ``C``); English where it is not one we have."""
    base = re.split(r"[-_.@]", (tag or "").strip().lower(), maxsplit=1)[0]
    return base if base in LANGUAGES else "en"


def language_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The language gettext would choose (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``:
    the first set one wins; ``LANGUAGE`` may list several). Reads the variables only, so it
    needs no system locale to be generated."""
    environ = os.environ if environ is None else environ
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if not value:
            continue
        for tag in value.split(":"):
            if tag in ("C", "POSIX") or tag.startswith("C."):
                return "en"
            base = re.split(r"[-_.@]", tag.lower(), maxsplit=1)[0]
            if base in LANGUAGES:
                return base
        return "en"
    return "en"


# --- catalogs ---------------------------------------------------------------------------------

def compile_catalogs(source: Path = SOURCES, target: Path = COMPILED) -> list[Path]:
    """Build every ``.mo`` that is missing or older than its ``.po``; the ones built. Each is
    written aside and renamed into place, so two processes starting at once never read half a
    file."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    built = []
    for po in sorted(source.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo = target / po.relative_to(source).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with open(po, "rb") as file:
            catalog = read_po(file, locale=po.parent.parent.name, domain=DOMAIN)
        fd, temp = tempfile.mkstemp(dir=mo.parent, prefix=mo.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                write_mo(file, catalog)
            os.chmod(temp, 0o644)  # mkstemp's 0600 would hide it from the app run by another user
            os.replace(temp, mo)
        except BaseException:
            os.unlink(temp)
            raise
        built.append(mo)
    return built


_cache: dict[str, gettext.NullTranslations] = {}
_lock = threading.Lock()


def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of ``lang``, compiled and loaded on first use; none (English) when it
    cannot be had — a read-only install without Babel still shows every message."""
    with _lock:
        if lang not in _cache:
            try:
                compile_catalogs()
            except (ImportError, OSError, ValueError):
                pass  # an existing .mo is still used below
            try:  # opened here, not by gettext.translation(): its cache would outlive a rebuild
                with open(COMPILED / lang / "LC_MESSAGES" / f"{DOMAIN}.mo", "rb") as file:
                    _cache[lang] = gettext.GNUTranslations(file)
            except OSError:
                _cache[lang] = gettext.NullTranslations()
        return _cache[lang]
