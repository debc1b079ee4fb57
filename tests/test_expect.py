"""What the next switch will be and how long it should take, from the start-time store."""

import re

import pytest

from managers.containers import State
from managers.expect import asleep_note, duration, expect
from managers.start_times import StartTimes


@pytest.fixture
def times(tmp_path):
    return StartTimes(tmp_path)


def said(expected, lang="en"):
    return expected.message.render(lang)


@pytest.mark.parametrize("seconds, text, russian", [
    (0.3, "<1 s", "<1 с"), (0.8, "~1 s", "~1 с"), (45.4, "~45 s", "~45 с"), (89, "~89 s", "~89 с"),
    (150, "~2 min", "~2 мин"), (3600, "~60 min", "~60 мин")])
def test_durations_read_as_people_estimate_them(seconds, text, russian):
    assert duration(seconds).render("en") == text
    assert duration(seconds).render("ru") == russian


def test_vllm_cold_wake_or_nothing(config, times):
    assert said(expect(config, times, "qwen3_vl_2b", "vllm")) == "cold start; no time kept yet"
    assert said(expect(config, times, "qwen3_vl_2b", "vllm", state=State.ASLEEP)) == "wakes from sleep; no time kept yet"
    for seconds in (40, 45, 60):
        times.record("qwen3_vl_2b", "cold", {"start": seconds - 2, "ready": 2})
    times.record("qwen3_vl_2b", "wake", {"start": 0.8})
    for state in (None, State.STOPPED, State.FAILED, State.STARTING):
        assert said(expect(config, times, "qwen3_vl_2b", "vllm", state=state)) == "~45 s: cold start"
    asleep = expect(config, times, "qwen3_vl_2b", "vllm", state=State.ASLEEP)
    assert (asleep.kind, said(asleep)) == ("wake", "~1 s: wakes from sleep")
    assert said(asleep, "ru") == "~1 с: пробуждение из сна"
    assert said(expect(config, times, "qwen3_vl_2b", "vllm", state=State.READY)) == "already running"
    # another model's records are its own
    assert said(expect(config, times, "qwen2_vl_2b", "vllm")) == "cold start; no time kept yet"


def test_local_load_or_kept_with_the_compiled_warm_up(config, times):
    key = "qwen3_vl_2b"
    assert said(expect(config, times, key, "local")) == "loads from disk; no time kept yet"
    assert said(expect(config, times, key, "local", kept=[key])) == "copied back from RAM; no time kept yet"
    times.record(key, "load", {"start": 20})
    times.record(key, "kept", {"start": 1.5})
    assert said(expect(config, times, key, "local", device="cuda")) == "~20 s: loads from disk"
    times.record(f"compile:{key}:cuda", "warm_up", {"warm_up": 100})
    assert said(expect(config, times, key, "local", device="cuda")) == "~2 min: loads from disk"
    assert said(expect(config, times, key, "local", device="cpu")) == "~20 s: loads from disk"
    kept = expect(config, times, key, "local", kept=["qwen2_vl_2b", key], device="cuda")
    assert (kept.kind, kept.seconds) == ("kept", 101.5)
    assert said(kept, "ru") == "~2 мин: копирование из ОЗУ"
    assert said(expect(config, times, key, "local", loaded=key, kept=[key])) == "already loaded"


def test_a_record_that_timed_its_warm_up_is_not_counted_twice(config, times):
    times.record("qwen3_vl_2b", "kept", {"start": 1, "warm_up": 2})
    times.record("compile:qwen3_vl_2b:cuda", "warm_up", {"warm_up": 100})
    assert expect(config, times, "qwen3_vl_2b", "local", kept=["qwen3_vl_2b"], device="cuda").seconds == 3


def test_cpu_and_remote_have_nothing_to_start(config, times):
    assert said(expect(config, times, "tesseract", "cpu")) == "nothing to load"
    model = config.models["qwen3_vl_2b"]
    remote = model.model_copy(update={"vllm": model.vllm.model_copy(update={"endpoint": "http://example.invalid/v1"})})
    config = config.model_copy(update={"models": {**config.models, "qwen3_vl_2b": remote}})
    assert said(expect(config, times, "qwen3_vl_2b", "vllm")) == "remote endpoint: nothing to start"


def test_sleeping_model_says_how_long_it_woke_last_time(times):
    assert asleep_note("Qwen", None).render("en") == "asleep: Qwen · not woken yet"
    times.record("q", "wake", {"start": 0.5, "ready": 0.3})
    times.record("q", "wake", {"start": 2.0})
    note = asleep_note("Qwen", times.last("q", "wake"))
    assert note.render("en") == "asleep: Qwen · woke in 2.0 s last time"
    assert note.render("ru") == "спит: Qwen · в прошлый раз проснулась за 2,0 с"


# --- the sidebar: the caption under Switch/Load, the sleeping models -------------------------

@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app on a config of two stand-in vLLM servers and two local models, Docker taken as
    reachable (the container states come from ``states``, as SingleContainerManager.status
    gives them), and the start-time store of the test's data dir."""
    import streamlit as st

    from managers import availability
    from managers.container_manager import SingleContainerManager
    from managers.containers import ModelStatus
    from tests.containers import fake_entry, local_entry, write_config

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "config.json").write_text("{}")  # has_weights looks for it; nothing is loaded
    entries = {"alpha": fake_entry("alpha"), "beta": fake_entry("beta"),
               "one": local_entry("one", weights), "two": local_entry("two", weights)}
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(write_config(tmp_path / "c.yaml", entries)))
    monkeypatch.setattr(availability, "docker_error", lambda: None)
    states = {"alpha": State.STOPPED, "beta": State.STOPPED}
    monkeypatch.setattr(SingleContainerManager, "status",
                        lambda self: {key: ModelStatus(key, state) for key, state in states.items()})
    st.cache_resource.clear()
    yield states
    st.cache_resource.clear()


def sidebar_at(mode: str, key: str, lang: str = "en"):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["language"] = lang
    at.run()
    at.sidebar.radio(key="mode").set_value(mode).run()
    at.sidebar.selectbox(key=f"model_{mode}").set_value(key).run()
    assert not at.exception
    return [c.value for c in at.sidebar.caption]


def times_here() -> StartTimes:
    from models.config import data_dir
    return StartTimes(data_dir())


def test_sidebar_says_how_long_a_vllm_switch_will_take(app):
    assert "cold start; no time kept yet" in sidebar_at("vllm", "alpha")
    times = times_here()
    for seconds in (44, 45, 47):
        times.record("alpha", "cold", {"start": seconds})
    times.record("beta", "wake", {"start": 0.5, "ready": 0.3})
    app["beta"] = State.ASLEEP
    captions = sidebar_at("vllm", "alpha")
    assert "~45 s: cold start" in captions
    assert "asleep: Fake beta · woke in 0.8 s last time" in captions
    assert "~1 s: wakes from sleep" in sidebar_at("vllm", "beta")
    russian = sidebar_at("vllm", "beta", "ru")
    assert "~1 с: пробуждение из сна" in russian
    assert "спит: Fake beta · в прошлый раз проснулась за 0,8 с" in russian


def test_sidebar_says_nothing_of_a_switch_to_the_running_model(app):
    times_here().record("alpha", "cold", {"start": 45})
    app["alpha"] = State.READY
    captions = sidebar_at("vllm", "alpha")
    assert not any("cold start" in c or "asleep" in c or "already" in c for c in captions)
    assert "cold start; no time kept yet" in sidebar_at("vllm", "beta")


def test_sidebar_says_how_long_a_local_load_will_take(app, monkeypatch):
    from managers.model_loader import ModelLoader

    assert "loads from disk; no time kept yet" in sidebar_at("local", "one")
    times = times_here()
    times.record("one", "load", {"start": 20})
    times.record("two", "kept", {"start": 1.2})
    times.record("compile:two:cpu", "warm_up", {"warm_up": 3})
    assert "~20 s: loads from disk" in sidebar_at("local", "one")
    # h-local's interface: the keys of the local models kept in host RAM, oldest first
    monkeypatch.setattr(ModelLoader, "kept", lambda self: ["two"])
    assert "~4 s: copied back from RAM" in sidebar_at("local", "two")
    assert "~4 с: копирование из ОЗУ" in sidebar_at("local", "two", "ru")


# --- cli.py: the EXPECTED column of models, the estimate while switching ---------------------

def models_table(*args, env=None) -> tuple[list[str], dict[tuple[str, str], str]]:
    """``cli.py models``: the header's column names, and each (key, mode) row's EXPECTED cell."""
    from tests.containers import cli

    done = cli("models", *args, env=env)
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    columns = list(re.finditer(r"\S+(?: \S+)*", header))  # cells are two spaces apart
    starts = [c.start() for c in columns] + [None]
    cell = lambda line, i: line[starts[i]:starts[i + 1]].strip()  # noqa: E731
    return [c.group() for c in columns], {(cell(line, 0), cell(line, 2)): cell(line, 4) for line in lines}


def test_cli_models_prints_the_expected_time_without_docker(tmp_path):
    import os

    data = tmp_path / "cli-data"
    data.mkdir()
    times = StartTimes(data)
    for seconds in (40, 45, 50):
        times.record("qwen3_vl_2b", "cold", {"memory": 1, "start": seconds - 1})
    times.record("qwen2_vl_2b", "load", {"start": 150})
    times.record("qwen2_vl_2b", "wake", {"start": 0.5})  # no state: Docker cannot say it sleeps
    env = {**os.environ, "CHATVLMLLM_DATA_DIR": str(data), "DOCKER_HOST": "unix:///nonexistent.sock"}
    header, cells = models_table(env=env)
    assert header[4] == "EXPECTED"
    assert cells[("qwen3_vl_2b", "vLLM")] == "~45 s: cold start"
    assert cells[("qwen2_vl_2b", "vLLM")] == "cold start; no time kept yet"
    assert cells[("qwen2_vl_2b", "Local")] == "~2 min: loads from disk"
    assert cells[("qwen3_vl_2b", "Local")] == "loads from disk; no time kept yet"
    assert cells[("tesseract", "CPU")] == "nothing to load"
    header, cells = models_table("--lang", "ru", env=env)
    assert header[4] == "ОЖИДАЕТСЯ"
    assert cells[("qwen3_vl_2b", "vLLM")] == "~45 с: холодный запуск"


@pytest.mark.docker
def test_cli_switch_says_its_estimate_and_models_reads_the_containers(tmp_path, clean_docker, monkeypatch):
    from tests.containers import cli, fake_entry, write_config

    path = write_config(tmp_path / "config.yaml", {"fake_a": fake_entry("fake_a"), "fake_b": fake_entry("fake_b")})
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    times_here().record("fake_a", "cold", {"start": 45})
    done = cli("switch", "fake_a")
    assert done.returncode == 0, done.stderr
    assert "(usually ready in ~45 s)" in done.stderr
    _header, cells = models_table()
    assert cells[("fake_a", "vLLM")] == "already running"  # the state read from Docker
    assert cells[("fake_b", "vLLM")] == "cold start; no time kept yet"
    assert cli("stop").returncode == 0


def test_progress_says_the_estimate_as_people_read_it(config, capsys):
    """A wake's estimate reads "~1 s", not "1s" or "0s"; the kind (wake or cold) is the
    manager's choice of ``SwitchEvent.estimate``."""
    import cli
    from managers.container_manager import SwitchEvent
    from managers.operations import Operation
    from models.i18n import _
    from views.sidebar import describe

    capsys.readouterr()  # Streamlit's import-time warnings
    cli.print_event(SwitchEvent("waking", _("waking {model}", model="q"), 0.2, estimate=0.8))
    cli.print_event(SwitchEvent("starting", _("starting {container}", container="c"), 3.0, estimate=45.2))
    cli.print_event(SwitchEvent("stopping", _("stopping {model}", model="p"), 0.1, estimate=45.2))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("waking q (usually ready in ~1 s)")
    assert lines[1].endswith("starting c (usually ready in ~45 s)")
    assert lines[2].endswith("stopping p")
    op = Operation(1, "switch", "qwen3_vl_2b", "vllm")
    op.events.append(SwitchEvent("waking", _("waking {model}", model="q"), 0.2, estimate=0.3))
    assert describe(op, config) == "waking q · 0 s (usually <1 s)"
