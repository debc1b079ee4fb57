"""Keeping the translation catalogs in step with the code, with Babel.

    python -m models.catalogs extract   the template locales/chatvlmllm.pot from the sources
    python -m models.catalogs update    extract, then merge it into every .po (translations kept)
    python -m models.catalogs compile   the .mo files the app reads (scripts/install.sh runs it)

Every string marked with ``_()`` or ``n_()`` (models/i18n.py) is extracted; a new one needs its
Russian msgstr in locales/ru/LC_MESSAGES/chatvlmllm.po, which tests/test_i18n.py checks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import read_po, write_po

from models.i18n import DOMAIN, KEYWORDS, LANGUAGES, ROOT, SOURCES, compile_catalogs

# Where user-facing text lives; the rest (tests, bench, scripts) speaks to developers.
SOURCE_DIRS = ("models", "managers", "views", "routes")
SOURCE_FILES = ("app.py", "cli.py", "api.py")
TEMPLATE = SOURCES / f"{DOMAIN}.pot"


def extracted(root: Path = ROOT) -> Iterator[tuple[str, int, str | tuple[str, ...]]]:
    """(file, line, msgid or (singular, plural)) of every marked string under ``root``."""
    for folder in SOURCE_DIRS:
        if (root / folder).is_dir():
            for name, line, message, _comments, _context in extract_from_dir(
                    root / folder, [("**.py", "python")], keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)):
                yield f"{folder}/{name}", line, message
    for name in SOURCE_FILES:
        if (root / name).is_file():
            for line, message, _comments, _context in extract_from_file("python", root / name, keywords=KEYWORDS):
                yield name, line, message


def extract() -> Catalog:
    template = Catalog(domain=DOMAIN, project="ChatVLMLLM", charset="utf-8")
    for name, line, message in extracted():
        template.add(message, locations=[(name, line)])
    with open(TEMPLATE, "wb") as file:
        write_po(file, template, width=100, sort_output=True)
    return template


def update() -> None:
    template = extract()
    for lang in LANGUAGES:
        path = SOURCES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        if path.exists():
            with open(path, "rb") as file:
                catalog = read_po(file, locale=lang, domain=DOMAIN)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=lang, domain=DOMAIN, project="ChatVLMLLM", charset="utf-8")
        # A msgid that changed a little comes back fuzzy with its old translation, for a person
        # to check; the .mo leaves fuzzy entries out and the test names them.
        catalog.update(template)
        with open(path, "wb") as file:
            write_po(file, catalog, width=100, sort_output=True, ignore_obsolete=True)


def main(argv: list[str]) -> int:
    commands = {"extract": extract, "update": update, "compile": compile_catalogs}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    commands[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
