"""The interface in Russian at the edge: the app's language selector and every view drawn in
it, sessions in different languages side by side, and the CLI's language from the
environment or --lang."""

import os
import subprocess
import sys
import threading

import pytest
import streamlit as st
import yaml
from streamlit.runtime import Runtime
from streamlit.testing.v1 import AppTest, app_test

import views.sidebar as sidebar_module
from tests.conftest import ROOT
from tests.helpers import MIXED, encode, render_lines


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def start(language: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    if language:
        at.sidebar.selectbox(key="language").set_value(language).run()
        assert not at.exception
    return at


def show(at: AppTest, view: str) -> AppTest:
    at.sidebar.radio(key="view").set_value(view).run()
    assert not at.exception and not at.error
    return at


def labels(at: AppTest, kind: str) -> set[str]:
    return {element.proto.label for element in at.get(kind)}


def test_the_selector_is_bilingual_and_english_comes_first():
    at = start()
    picker = at.sidebar.selectbox(key="language")
    assert picker.label == "Language / Язык"
    assert picker.value == "en" and picker.options == ["English", "Русский"]
    assert at.sidebar.radio(key="view").label == "View"
    assert at.title[0].value == "Read a document"


def test_every_view_in_russian():
    at = start("ru")
    sidebar = at.sidebar
    assert sidebar.radio(key="view").label == "Раздел"
    views = ["Распознать", "Сравнить", "Оценить", "История"]
    assert sidebar.radio(key="view").options == views
    assert sidebar.radio(key="mode").label == "Режим"
    assert sidebar.selectbox(key="model_cpu").label == "Модель"
    assert "**Активная модель:** Tesseract 5" in [m.value for m in sidebar.markdown]
    assert sidebar.selectbox(key="language").label == "Language / Язык"  # the way back, in both

    assert at.title[0].value == "Распознавание документа"
    assert at.info[0].value == ("Загрузите сканы, фотографии или PDF, "
                                "чтобы распознать их.")

    show(at, "compare")
    assert at.title[0].value == "Сравнение двух моделей"
    assert at.button(key="cmp_run").label == "Сравнить"
    assert at.selectbox(key="cmp0_mode").label == "Режим"
    assert at.markdown[0].value == "**Первая**"

    show(at, "evaluate")
    assert at.title[0].value == "Оценка моделей на ваших документах"
    assert at.button(key="eval_run").label == "Оценить"
    assert at.multiselect(key="eval_models").label == "Модели"

    show(at, "history")
    assert at.title[0].value == "История"
    assert at.text_input(key="history_search").label == "Поиск по имени файла"
    assert at.info[0].value == "Сохранённых запусков пока нет."


def test_a_document_read_in_russian_and_reopened_from_the_history():
    at = start("ru")
    at.file_uploader[0].upload("mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.run()
    assert at.button[0].label == "Запуск"
    at.button[0].click().run()
    assert not at.exception and not at.error
    success = at.success[0].value
    assert success.startswith("Распознано 1 из 1 страницы с помощью tesseract за ")
    assert success.endswith(" с.")
    assert "," in success.split(" за ")[1]  # seconds with a decimal comma
    assert [tab.label for tab in at.tabs] == ["Текст", "Markdown", "Разметка", "JSON", "Чат"]
    assert labels(at, "download_button") >= {"Страница 1 .txt", "Документ .docx"}

    show(at, "history")
    run = at.selectbox(key="history_run")
    assert run.label == "Запуск"
    shown = run.format_func(run.value)
    day, rest = shown.split(" · ", 1)
    assert day.count(".") == 2 and "," in day  # 28.11.2026, 08:23
    assert rest.startswith("mixed.png · 1 стр. · tesseract (CPU, text) · ") and rest.endswith(" с")
    assert at.button(key="history_delete").label == "Удалить этот запуск"

    at.sidebar.selectbox(key="language").set_value("en").run()  # back: the same run, in English
    assert at.sidebar.radio(key="view").value == "history"
    assert at.title[0].value == "History"
    assert at.button(key="history_delete").label == "Delete this run"


def test_the_config_can_open_the_app_in_russian(tmp_path, monkeypatch):
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["ui"] = {"language": "ru"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    at = start()
    assert at.sidebar.selectbox(key="language").value == "ru"
    assert at.title[0].value == "Распознавание документа"


class SharedRuntime:
    """AppTest sets the process's Runtime instance for each run and clears it after, so one
    session's run ending would pull it from under the other's. Here the first one set stays
    until the test ends (Streamlit's own server has one runtime for every session)."""

    def __getattr__(self, name):
        return getattr(Runtime, name)

    def __setattr__(self, name, value):
        if name == "_instance" and (value is None or Runtime._instance is not None):
            return
        setattr(Runtime, name, value)

    def __dir__(self):
        return dir(Runtime)


def test_two_sessions_at_once_each_in_its_own_language(monkeypatch):
    monkeypatch.setattr(app_test, "Runtime", SharedRuntime())
    monkeypatch.setattr(Runtime, "_instance", None)
    titles = {"en": "Compare two models", "ru": "Сравнение двух моделей"}
    buttons = {"en": "Compare", "ru": "Сравнить"}
    # Every run below stops right after its language is picked, until the other session's run
    # has picked its own: a language kept anywhere but in the session (a process global set at
    # the start of a run) would then be the other's when the first word is drawn.
    together = threading.Event()
    ready = threading.Barrier(2, timeout=120, action=together.set)
    picked = threading.Barrier(2, timeout=60)
    picker = sidebar_module.language_picker

    def pick_then_wait_for_the_other(config):
        chosen = picker(config)
        if together.is_set():
            picked.wait()
        return chosen

    monkeypatch.setattr(sidebar_module, "language_picker", pick_then_wait_for_the_other)
    opening = threading.Lock()  # AppTest's first runs set up process-wide mocks: one at a time
    seen: dict[str, list[tuple[str, str]]] = {"en": [], "ru": []}
    failures: list[BaseException] = []

    def session(language: str) -> None:
        try:
            with opening:
                at = start(language)
                show(at, "compare")
            ready.wait()  # both sessions are drawn from here on, at the same time
            for _ in range(4):
                at.run()
                assert not at.exception
                seen[language].append((at.title[0].value, at.button(key="cmp_run").label))
        except BaseException as exc:  # reported by the test's own thread
            failures.append(exc)
            ready.abort()
            picked.abort()

    threads = [threading.Thread(target=session, args=(lang,)) for lang in ("en", "ru")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    for language in ("en", "ru"):
        assert seen[language] == [(titles[language], buttons[language])] * 4


def cli(*args, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**env, "LANG": lang})


def test_cli_speaks_the_language_of_the_environment(tmp_path):
    missing = tmp_path / "missing.png"
    russian = cli("ocr", missing, "--model", "tesseract", lang="ru_RU.UTF-8")
    assert russian.returncode == 1
    assert russian.stderr.strip() == f"ошибка: «{missing}» не существует."
    english = cli("ocr", missing, "--model", "tesseract", lang="en_US.UTF-8")
    assert english.returncode == 1
    assert english.stderr.strip() == f"error: '{missing}' does not exist."


def test_cli_lang_overrides_the_environment(tmp_path):
    missing = tmp_path / "missing.png"
    for args in (("--lang", "en", "ocr", missing), ("ocr", missing, "--lang", "en")):
        done = cli(*args, "--model", "tesseract", lang="ru_RU.UTF-8")
        assert done.returncode == 1 and done.stderr.strip() == f"error: '{missing}' does not exist."
    done = cli("--lang", "ru", "ocr", missing, "--model", "tesseract", lang="en_US.UTF-8")
    assert done.stderr.strip() == f"ошибка: «{missing}» не существует."


def test_cli_usage_errors_keep_their_exit_code_in_russian():
    done = cli("ocr", "x.png", "--model", "no_such_model", lang="ru_RU.UTF-8")
    assert done.returncode == 2
    assert done.stderr.startswith("ошибка: ") and "no_such_model" in done.stderr
    assert "Traceback" not in done.stderr


def test_choices_survive_a_change_of_language():
    """The browser sends a choice back as the label it showed; the labels change with the
    language, and every choice stays what it was."""
    at = start()
    at.sidebar.radio(key="mode").set_value("local").run()
    at.sidebar.selectbox(key="model_local").set_value("qwen2_vl_2b").run()
    show(at, "compare")
    at.selectbox(key="cmp0_mode").set_value("local").run()
    at.sidebar.selectbox(key="language").set_value("ru").run()
    assert not at.exception
    assert at.sidebar.radio(key="mode").value == "local"
    assert at.sidebar.selectbox(key="model_local").value == "qwen2_vl_2b"
    assert at.sidebar.radio(key="view").value == "compare"
    assert at.selectbox(key="cmp0_mode").value == "local"
    assert at.selectbox(key="cmp0_mode").format_func("local") == "Локальный"
    assert at.title[0].value == "Сравнение двух моделей"


def test_the_eval_chart_speaks_the_language_and_the_csv_stays_english(monkeypatch):
    from matplotlib.figure import Figure

    from managers import eval_report
    from managers.evaluation import Evaluation, ModelResult
    from managers.runs import Choice
    from models.i18n import Message

    said: list[str] = []
    original = Figure.subplots

    def subplots(self, *args, **kwargs):  # keep the axes' titles and texts as they are set
        axes = original(self, *args, **kwargs)
        for one in axes:
            monkeypatch.setattr(one, "set_title", lambda text, *a, **k: said.append(text))
            monkeypatch.setattr(one, "text", lambda x, y, text, *a, **k: said.append(text))
        return axes

    monkeypatch.setattr(Figure, "subplots", subplots)
    evaluation = Evaluation(samples=[], models=[ModelResult(Choice("tesseract", "local", "text"),
                                                            error=Message("It could not be made ready."))])
    assert eval_report.chart_png(evaluation, lang="ru").startswith(b"\x89PNG")
    assert said == ["нет оценки", "Доля ошибок, % (меньше — лучше)", "Страниц в минуту (больше — лучше)"]
    assert eval_report.csv_text(evaluation).splitlines()[0].startswith("model,mode,task,document,pages")


def test_cli_help_and_usage_errors_follow_the_language():
    """argparse's own words too: a person who reads Russian gets --help and a usage error in Russian."""
    usage = cli("eval", lang="ru_RU.UTF-8")
    assert usage.returncode == 2
    assert usage.stderr.startswith("использование: cli.py eval")
    assert usage.stderr.strip().endswith("cli.py eval: ошибка: обязательны аргументы: DIR, --models")
    english = cli("eval", lang="en_US.UTF-8")
    assert english.stderr.strip().endswith("cli.py eval: error: the following arguments are required: DIR, --models")
    helped = cli("ocr", "--help", lang="C.UTF-8")
    assert "a model key from `cli.py models`" in helped.stdout
    helped = cli("--lang", "ru", "ocr", "--help", lang="C.UTF-8")
    assert "ключ модели из `cli.py models`" in helped.stdout and "показать эту справку и выйти" in helped.stdout
