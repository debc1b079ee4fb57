"""Sleep mode on a real Docker engine, against the stand-in vLLM server (tests/fixtures/fake_vllm.py
implements the documented sleep endpoints; the CPU build of vLLM refuses sleep mode) and the
fake NVML (tests/fixtures/fake_nvml), whose card's memory is what the stand-ins write."""

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from managers.arbiter import Arbiter
from managers.container_manager import SingleContainerManager
from managers.containers import State
from managers.gpu import probe_gpus
from managers.runtime import Runtime
from managers.sleep import SleepEndpoints
from managers import runs
from models.config import load_config
from models.errors import StillBusy, SwitchError
from tests.containers import (
    Sampler, cli, fake_entry, on_fake_gpu, running_managed, use_fake_nvml, write_config,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def nvml(tmp_path, monkeypatch):
    return use_fake_nvml(monkeypatch, tmp_path / "nvml")


def config_of(tmp_path, nvml, a_args=(), b_args=(), a_sleep=1, b_sleep=1, a_asleep_gb=1.0, b_share=0.5,
              **switching):
    entries = {"fake_a": on_fake_gpu(fake_entry("fake_a", delay=0.3, extra_args=a_args), nvml,
                                     asleep_gb=a_asleep_gb, sleep=a_sleep),
               "fake_b": on_fake_gpu(fake_entry("fake_b", delay=0.3, extra_args=b_args), nvml,
                                     share=b_share, sleep=b_sleep)}
    path = write_config(tmp_path / "c.yaml", entries, **switching)
    return load_config(path)


def get(config, key, path):
    with urllib.request.urlopen(config.models[key].vllm.base_url + path, timeout=10) as response:
        return json.load(response)


def chat(config, key, api_key) -> str:
    request = urllib.request.Request(
        config.models[key].vllm.base_url + "/v1/chat/completions", method="POST",
        data=json.dumps({"model": key, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["choices"][0]["message"]["content"]


def chat_in_flight(config, manager) -> tuple[threading.Thread, dict]:
    """A chat with fake_a, running in a thread; returns once fake_a's /metrics counts it."""
    answer = {}
    reading = threading.Thread(target=lambda: answer.update(text=chat(config, "fake_a", manager.api_key)))
    reading.start()
    endpoints = SleepEndpoints(config.models["fake_a"].vllm.base_url, "a")
    while endpoints.in_flight() == 0:
        pass
    return reading, answer


def container_id(client, key):
    return client.containers.get(f"chatvlmllm-test-{key}").id


def said(events, stage=None):
    return [str(e.message) for e in events if stage is None or e.stage == stage]


@pytest.mark.parametrize("level, wake_calls", [
    (1, ["/wake_up"]),
    (2, ["/wake_up?tags=weights", "/collective_rpc reload_weights", "/wake_up?tags=kv_cache"]),
])
def test_a_switch_back_wakes_the_sleeper(tmp_path, clean_docker, nvml, level, wake_calls):
    config = config_of(tmp_path, nvml, a_sleep=level, b_sleep=level)
    manager = SingleContainerManager(config)
    arbiter = Arbiter(config, manager)
    arbiter.switch("fake_a")
    first = container_id(clean_docker, "fake_a")
    assert probe_gpus().free_gb == pytest.approx(12)  # fake_a reserves half the 24 GB card

    events = []
    arbiter.switch("fake_b", events.append)
    assert manager.last_report.slept == ["fake_a"] and manager.last_report.stopped == []
    assert f"putting Fake fake_a to sleep (level {level})" in said(events, "sleeping")
    statuses = manager.status()
    assert statuses["fake_a"].state is State.ASLEEP and statuses["fake_b"].state is State.READY
    assert manager.active() == "fake_b"
    assert get(config, "fake_a", "/is_sleeping") == {"is_sleeping": True}
    with pytest.raises(urllib.error.HTTPError) as refused:  # /v1 is refused while it sleeps
        chat(config, "fake_a", manager.api_key)
    assert refused.value.code == 503
    assert probe_gpus().free_gb == pytest.approx(24 - 1 - 12)  # it gave back all but 1 GB
    assert manager.sleepers.kept_gb()["fake_a"] == pytest.approx(1)  # measured, not assumed

    events = []
    arbiter.switch("fake_a", events.append)
    assert manager.last_report.woke and container_id(clean_docker, "fake_a") == first  # woken, not started
    assert f"waking Fake fake_a (sleep level {level})" in said(events, "waking")
    assert get(config, "fake_a", "/fake/calls") == [f"/sleep?level={level}&mode=wait", *wake_calls]
    assert chat(config, "fake_a", manager.api_key) == "Read by fake_a."
    assert probe_gpus().free_gb == pytest.approx(24 - 12 - 1)  # it took its memory again; fake_b sleeps
    assert manager.status()["fake_b"].state is State.ASLEEP
    woke = manager.history.last("fake_a", "wake")
    assert set(woke.stages) == {"stop", "memory", "start", "ready"}
    assert set(manager.history.last("fake_a", "cold").stages) == {"stop", "memory", "pull", "start", "ready"}

    arbiter.switch("fake_b")
    events = []
    arbiter.switch("fake_a", events.append)  # its progress says how long a wake, not a cold start, takes
    assert {e.estimate for e in events} == {woke.total} != {manager.history.estimate("fake_a", "cold")}


def test_requests_in_flight_finish_before_the_sleep(tmp_path, clean_docker, nvml):
    """The stand-in dies (as vLLM can, vllm#45520) if put to sleep with a request in flight."""
    config = config_of(tmp_path, nvml, a_args=["--answer-delay", "3"])
    manager = SingleContainerManager(config)
    manager.switch("fake_a")
    reading, answer = chat_in_flight(config, manager)
    events = []
    manager.switch("fake_b", events.append)
    reading.join(30)
    assert answer["text"] == "Read by fake_a."
    assert "waiting for 1 request in flight on Fake fake_a" in said(events, "sleeping")
    assert manager.last_report.slept == ["fake_a"]
    assert manager.status()["fake_a"].state is State.ASLEEP


def test_requests_still_in_flight_when_the_wait_ends_refuse_the_switch(tmp_path, clean_docker, nvml):
    """Neither a sleep nor a stop may cut them: the server is left awake, the target not started."""
    config = config_of(tmp_path, nvml, a_args=["--answer-delay", "6"], pages_wait_timeout_s=1)
    manager = SingleContainerManager(config)
    manager.switch("fake_a")
    first = container_id(clean_docker, "fake_a")
    reading, answer = chat_in_flight(config, manager)
    with pytest.raises(StillBusy) as refused:
        manager.switch("fake_b")
    assert str(refused.value) == ("Fake fake_a still had 1 request in flight after 1 s "
                                  "(switching.pages_wait_timeout_s), so it was left running; switch again "
                                  "when it finishes.")
    reading.join(30)
    assert answer["text"] == "Read by fake_a."
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]
    assert container_id(clean_docker, "fake_a") == first
    assert manager.status()["fake_a"].state is State.READY
    assert not manager.last_report.stopped and not manager.last_report.slept


def test_a_slow_sleep_ends_before_the_next_model_starts(tmp_path, clean_docker, nvml):
    config = config_of(tmp_path, nvml, a_args=["--sleep-delay", "2"])
    manager = SingleContainerManager(config)
    manager.switch("fake_a")
    sampler = Sampler(clean_docker, nvml_dir=nvml)
    sampler.start()
    try:
        manager.switch("fake_b")
    finally:
        sampler.stop()
    assert sampler.most <= 1, sampler.seen  # never two servers awake on the card
    assert manager.last_report.slept == ["fake_a"]
    assert sorted(running_managed(clean_docker)) == ["chatvlmllm-test-fake_a", "chatvlmllm-test-fake_b"]


def test_the_sleep_level_is_recorded_before_the_sleep_begins(tmp_path, clean_docker, nvml):
    """A record written only after the sleep would leave a stale level behind a process killed
    mid-sleep, and level 1's single wake call would skip reloading what level 2 dropped."""
    config = config_of(tmp_path, nvml, a_args=["--sleep-delay", "3"], a_sleep=2)
    manager = SingleContainerManager(config)
    manager.switch("fake_a")
    manager.sleepers.record("fake_a", 1, None)  # a stale level from an earlier sleep
    switching = threading.Thread(target=manager.switch, args=("fake_b",))
    switching.start()
    endpoints = SleepEndpoints(config.models["fake_a"].vllm.base_url, "a")
    deadline = time.monotonic() + 30
    while manager.sleepers.level("fake_a") == 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    asleep_already = endpoints.is_sleeping()
    switching.join(60)
    assert not asleep_already
    assert manager.sleepers.level("fake_a") == 2
    assert manager.last_report.slept == ["fake_a"]


def test_a_sleep_slower_than_its_bound_stops_the_server(tmp_path, clean_docker, nvml):
    config = config_of(tmp_path, nvml, a_args=["--sleep-delay", "4"], stop_timeout_s=2)
    manager = SingleContainerManager(config)
    manager.switch("fake_a")
    events = []
    manager.switch("fake_b", events.append)
    assert any(m.startswith("Fake fake_a could not be put to sleep, so it was stopped: chatvlmllm-test-fake_a "
                            "did not answer /sleep") for m in said(events, "stopping")), said(events)
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]


def test_a_wake_that_fails_starts_the_model_cold(tmp_path, clean_docker, nvml):
    config = config_of(tmp_path, nvml, a_args=["--fail-wake"])
    manager = SingleContainerManager(config)
    manager.switch("fake_a")
    first = container_id(clean_docker, "fake_a")
    manager.switch("fake_b")
    events = []
    manager.switch("fake_a", events.append)
    assert ("Fake fake_a could not be woken, so it was stopped and starts the cold way: chatvlmllm-test-fake_a "
            "answered 500 to /wake_up.") in said(events, "stopping")
    assert container_id(clean_docker, "fake_a") != first and not manager.last_report.woke
    assert chat(config, "fake_a", manager.api_key) == "Read by fake_a."
    assert manager.status()["fake_b"].state is State.ASLEEP


def test_a_pair_that_does_not_fit_is_switched_the_cold_way(tmp_path, clean_docker, nvml):
    """fake_a keeps 8 GB asleep; fake_b reserves 18 of the 24 GB: they do not fit together."""
    config = config_of(tmp_path, nvml, a_asleep_gb=8, b_share=0.75, b_sleep=0)
    manager = SingleContainerManager(config)
    manager.switch("fake_a")
    events = []
    manager.switch("fake_b", events.append)  # nothing measured yet: it sleeps, is measured, then stopped
    assert ("Fake fake_a was stopped rather than put to sleep: asleep it keeps 8.0 GB on the GPU, and the "
            "18.0 GB the next model reserves do not fit in the 16.0 GB left free.") in said(events, "stopping")
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]
    manager.switch("fake_a")
    events = []
    manager.switch("fake_b", events.append)  # measured now: stopped without trying
    assert ("Fake fake_a was stopped rather than put to sleep: asleep it keeps 8.0 GB on the GPU, and with the "
            "18.0 GB the next model reserves that does not fit in the card's 24.0 GB.") in said(events, "stopping")
    assert said(events, "sleeping") == []
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]


def test_a_container_created_without_the_sleep_flags_is_stopped(tmp_path, clean_docker, nvml):
    before = config_of(tmp_path, nvml, a_sleep=0)
    SingleContainerManager(before).switch("fake_a")  # created while sleep was off for it
    config = config_of(tmp_path, nvml, a_sleep=1)
    events = []
    SingleContainerManager(config).switch("fake_b", events.append)
    assert ("Fake fake_a was stopped rather than put to sleep: its container was created without "
            "--enable-sleep-mode and VLLM_SERVER_DEV_MODE=1 (by docker compose, or before sleep was turned on)."
            ) in said(events, "stopping")
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]


def test_cli_status_shows_sleepers_and_cli_stop_stops_them(tmp_path, clean_docker, nvml, monkeypatch):
    config = config_of(tmp_path, nvml)
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(tmp_path / "c.yaml"))
    for key in ("fake_a", "fake_b", "fake_a", "fake_b"):  # fake_a slept, woke, and sleeps again
        assert cli("switch", key).returncode == 0
    shown = cli("status")
    line = next(row for row in shown.stdout.splitlines() if row.startswith("fake_a"))
    assert "asleep" in line and "sleep level 1; it woke in" in line, shown.stdout
    assert SingleContainerManager(config).history.last("fake_a", "wake") is not None
    assert cli("stop").returncode == 0
    assert running_managed(clean_docker) == []


def test_idle_unload_stops_the_sleepers_too(tmp_path, clean_docker, nvml, monkeypatch):
    config = config_of(tmp_path, nvml, idle_unload_s=1)
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(tmp_path / "c.yaml"))
    runtime = Runtime(config)
    try:
        runs.switch(runtime, "fake_a").wait()
        runs.switch(runtime, "fake_b").wait()
        assert len(running_managed(clean_docker)) == 2  # one awake, one asleep
        runtime.watch_idle()
        deadline = time.monotonic() + 60
        while running_managed(clean_docker):
            assert time.monotonic() < deadline, running_managed(clean_docker)
            time.sleep(0.2)
    finally:
        runtime.close()


def test_idle_unload_stops_a_sleeper_left_by_a_failed_switch(tmp_path, clean_docker, nvml, monkeypatch):
    """A → B puts A to sleep, then B dies while starting: nothing is awake, but A still holds
    its share of the card; idle unload stops it all the same."""
    config = config_of(tmp_path, nvml, b_args=["--crash-after", "0.2"], idle_unload_s=1)
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(tmp_path / "c.yaml"))
    runtime = Runtime(config)
    try:
        runs.switch(runtime, "fake_a").wait()
        with pytest.raises(SwitchError):
            runs.switch(runtime, "fake_b").wait()
        assert runtime.arbiter.holder() is None
        assert SingleContainerManager(config).status()["fake_a"].state is State.ASLEEP
        runtime.watch_idle()
        deadline = time.monotonic() + 60
        while running_managed(clean_docker):
            assert time.monotonic() < deadline, running_managed(clean_docker)
            time.sleep(0.2)
        assert not runtime.operations.joined
    finally:
        runtime.close()
