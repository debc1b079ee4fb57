"""Russian and English: messages as id + params rendered per reader, the real catalogs, the
history keeping messages translatable, and every marked string translated."""

import json
import os
import shutil
import string
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from babel.messages.pofile import read_po

from managers.history import History
from managers.prepare import PREPARED, describe
from managers.runs import Choice, Run
from models import render
from models.catalogs import extracted
from models.document import open_document
from models.errors import InputError
from models.i18n import (DOMAIN, SOURCES, Message, _, compile_catalogs, datetime_text, language_from_env, n_,
                         number, plain_language, translate)
from models.layout import parse_layout
from models.result import OCRResult, PageResult
from tests.conftest import ROOT

RU_PO = SOURCES / "ru" / "LC_MESSAGES" / f"{DOMAIN}.po"


@pytest.mark.parametrize("n, russian, english", [
    (1, "прочитана 1 страница", "1 page is read"),
    (2, "прочитаны 2 страницы", "2 pages are read"),
    (5, "прочитано 5 страниц", "5 pages are read"),
    (11, "прочитано 11 страниц", "11 pages are read"),
    (21, "прочитана 21 страница", "21 pages are read"),
])
def test_russian_plural_forms_come_from_the_compiled_catalog(n, russian, english):
    message = n_("{n} page is read", "{n} pages are read", n)
    assert message.render("ru") == russian
    assert message.render("en") == english == str(message)


def test_language_from_the_environment_in_gettext_order():
    env = {"LANGUAGE": "ru:en", "LC_ALL": "en_US.UTF-8", "LC_MESSAGES": "en_GB", "LANG": "en_US"}
    assert language_from_env(env) == "ru"  # LANGUAGE beats LC_ALL
    env = {"LANGUAGE": "", "LC_ALL": "ru_RU.UTF-8", "LC_MESSAGES": "en_GB", "LANG": "en_US"}
    assert language_from_env(env) == "ru"  # LC_ALL beats LC_MESSAGES
    assert language_from_env({"LC_ALL": "C", "LANG": "ru_RU.UTF-8"}) == "en"
    assert language_from_env({"LC_MESSAGES": "ru_RU", "LANG": "en_US.UTF-8"}) == "ru"
    assert language_from_env({"LC_MESSAGES": "en_US", "LANG": "ru_RU.UTF-8"}) == "en"
    assert language_from_env({"LANG": "ru_RU.UTF-8"}) == "ru"
    assert language_from_env({"LANG": "POSIX"}) == "en"
    assert language_from_env({"LANGUAGE": "de:ru"}) == "ru"  # the first language we have
    assert language_from_env({}) == "en"


def test_language_from_the_environment_needs_no_generated_locale():
    # ru_RU.UTF-8 is not generated on this machine (nor on CI's): only the variable is read.
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    out = subprocess.run([sys.executable, "-c", "from models.i18n import language_from_env as f; print(f())"],
                         cwd=ROOT, env={**env, "LANG": "ru_RU.UTF-8"}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ru"


def test_browser_locale_tags():
    assert [plain_language(tag) for tag in ("ru-RU", "ru", "RU", "en-US", "de-DE", "", None)] == \
        ["ru", "ru", "ru", "en", "en", "en", "en"]


def test_an_error_raised_with_a_message_reads_in_either_language(limits):
    with pytest.raises(InputError) as caught:
        open_document(b"", "scan.png", limits)
    assert str(caught.value) == "'scan.png' is empty (0 bytes); choose the file again."
    assert translate(caught.value, "en") == str(caught.value)
    assert translate(caught.value, "ru") == "«scan.png» пуст (0 байт); выберите файл ещё раз."
    assert caught.value.message.id == "'{name}' is empty (0 bytes); choose the file again."


def test_text_without_an_id_is_shown_as_it_is():
    assert translate("No such file or directory", "ru") == "No such file or directory"
    assert translate(OSError("disk full"), "ru") == "disk full"
    assert Message("not {a} template").render("ru") == "not {a} template"  # an old plain row
    assert Message("").render("ru") == ""
    assert _("A sentence no catalog has, {name}.", name="x").render("ru") == "A sentence no catalog has, x."


def test_nested_messages_and_numbers_follow_the_language():
    ready = _("{model} ready in {seconds:.1f} s, {memory:.2f} GB", model="Qwen", seconds=12.25, memory=4.5)
    assert str(ready) == "Qwen ready in 12.2 s, 4.50 GB"
    assert ready.render("ru") == "Qwen готова за 12,2 с, 4,50 ГБ"
    error = _("Page {page} was not read: {error}", page=3, error=_("Reading was cancelled."))
    assert error.render("ru") == "Страница 3 не распознана: Распознавание отменено."
    assert number(1.5, "ru") == "1,5" and number(1.5, "en") == "1.5"
    assert number(1234567, "ru") == "1\xa0234\xa0567" and number(1234567, "en") == "1,234,567"
    assert number(2, "ru", digits=2) == "2,00"
    moment = datetime(2026, 1, 15, 14, 3, tzinfo=timezone.utc)
    assert datetime_text(moment, "ru") == "15.01.2026, 14:03"
    assert datetime_text(moment, "en") == "1/15/26, 2:03\u202fPM"


def test_a_message_survives_pickling_and_copying():
    import copy
    import pickle
    message = n_("{n} page is read", "{n} pages are read", 3)
    for again in (pickle.loads(pickle.dumps(message)), copy.deepcopy(message)):
        assert (again.id, again.plural, again.n, again.params) == (message.id, message.plural, 3, {"n": 3})
        assert again.render("ru") == "прочитаны 3 страницы"


def _result() -> OCRResult:
    cells, warnings = parse_layout('[{"bbox": [1, 2, 3], "category": "Text"}, '
                                   '{"bbox": [0, 0, 10, 10], "category": "Text", "text": "ok"}]')
    prepared = _(PREPARED, page=1, steps=_("{steps}; {step}", steps=_("turned 90° clockwise"),
                                            step=_("straightened {angle:.1f}°", angle=3.4)))
    pages = [PageResult(index=0, text="ok", warnings=[prepared, *warnings]),
             PageResult(index=1, error=_("Page {page} was not read: cancelled.", page=2))]
    return OCRResult(model="tesseract", engine="tesseract", task="text", pages=pages)


def test_a_reopened_run_reads_in_the_language_chosen_now(config):
    history = History(config)
    run_id = history.add(Run(Choice("tesseract", "cpu", "text"), _result(), {}), "scan.png", b"data")
    page, failed = history.get(run_id).result.pages
    assert [w.render("ru") for w in page.warnings] == [
        "Страница 1 подготовлена к распознаванию: повёрнута на 90° по часовой стрелке; выровнен наклон 3,4°.",
        "разобрано частично: отброшена 1 ячейка без правильной рамки"]
    assert describe(page.warnings, "ru") == "повёрнута на 90° по часовой стрелке; выровнен наклон 3,4°"
    assert describe(page.warnings) == "turned 90° clockwise; straightened 3.4°"
    assert failed.error.render("ru") == "Страница 2 не распознана: отменено."
    assert failed.error == "Page 2 was not read: cancelled."


def test_a_run_stored_as_plain_text_still_opens():
    old = ('{"model": "m", "engine": "e", "task": "t", "pages": [{"index": 0, "error": "Page 1 failed.",'
           ' "warnings": ["Page 1 was prepared for reading: turned 180°."]}]}')
    page = OCRResult.model_validate_json(old).pages[0]
    assert page.error == "Page 1 failed." and page.error.render("ru") == "Page 1 failed."
    assert describe(page.warnings) == "turned 180°"


def test_the_json_export_keeps_messages_as_strings():
    english = json.loads(render.json(_result()))
    assert english["pages"][0]["warnings"][1] == "partly parsed: 1 cell without a valid box was dropped"
    assert english["pages"][1]["error"] == "Page 2 was not read: cancelled."
    russian = json.loads(render.render(_result(), "json", "ru"))
    assert russian["pages"][0]["warnings"][1] == "разобрано частично: отброшена 1 ячейка без правильной рамки"
    assert russian["pages"][1]["error"] == "Страница 2 не распознана: отменено."
    raw = json.loads(_result().model_dump_json(context={"messages": "raw"}))
    assert raw["pages"][1]["error"] == {"id": "Page {page} was not read: cancelled.", "params": {"page": 2},
                                        "plural": None, "n": None}


def test_a_stale_catalog_is_rebuilt(tmp_path):
    source, target = tmp_path / "locales", tmp_path / "build"
    shutil.copytree(SOURCES, source)
    built = compile_catalogs(source, target)
    mo = target / "ru" / "LC_MESSAGES" / f"{DOMAIN}.mo"
    assert mo in built and compile_catalogs(source, target) == []  # up to date: nothing to do
    po = source / "ru" / "LC_MESSAGES" / f"{DOMAIN}.po"
    older = po.stat().st_mtime - 60
    os.utime(mo, (older, older))
    assert compile_catalogs(source, target) == [mo]
    assert mo.stat().st_mtime >= po.stat().st_mtime
    mo.unlink()
    assert compile_catalogs(source, target) == [mo]


def _fields(text: str) -> list[tuple[str, str]]:
    return sorted((name, spec) for _text, name, spec, _conversion in string.Formatter().parse(text)
                  if name is not None)


def test_every_marked_string_has_a_russian_translation():
    with open(RU_PO, "rb") as file:
        catalog = read_po(file, locale="ru")
    problems = []
    for where, line, msgid in extracted():
        entry = catalog.get(msgid)
        plural = isinstance(msgid, tuple)
        key = msgid[0] if plural else msgid
        forms = (entry.string if plural else [entry.string]) if entry is not None else []
        if entry is None or entry.fuzzy or not all(forms) or len(forms) != (3 if plural else 1):
            problems.append(f"{where}:{line}: no Russian translation of {key!r} "
                            "(python -m models.catalogs update, then translate it)")
            continue
        expected = _fields(msgid[1] if plural else msgid)
        problems += [f"{where}:{line}: {form!r} has {_fields(form)}, the English has {expected}"
                     for form in forms if _fields(form) != expected]
    assert not problems, "\n".join(problems)
