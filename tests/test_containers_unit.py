"""Pure decisions of vLLM mode, and the GPU-only parts with recorded responses (CI has no GPU)."""

import json

import pytest

from managers.admission import admit
from managers.container_manager import SingleContainerManager
from managers.containers import (
    LABEL_MANAGED, LABEL_MODEL, ContainerInfo, State, container_spec, derive_state, has_gpu_runtime,
    plan_switch,
)
from managers.gpu import GPU, GPUProbe
from managers.start_times import StartTimes
from models.errors import NotAvailable, SwitchError


def info(name, status="running", model=None, managed=True, code=0, compose=False, oom=False):
    return ContainerInfo(id=name, name=name, status=status, managed=managed, model=model,
                         exit_code=code, compose=compose, oom_killed=oom)


def test_plan_stops_every_other_running_model_and_creates_the_target():
    plan = plan_switch("b", "cb", [info("ca", model="a"), info("cx", status="exited", model="x")])
    assert [c.name for c in plan.stop] == ["ca"] and plan.remove == () and plan.create


def test_plan_joins_a_running_target():
    plan = plan_switch("a", "ca", [info("ca", model="a")])
    assert plan.reuse.name == "ca" and plan.stop == () and not plan.create


def test_plan_removes_an_exited_container_of_the_same_name():
    plan = plan_switch("a", "ca", [info("ca", status="exited", model="a", code=2)])
    assert [c.name for c in plan.remove] == ["ca"] and plan.create


def test_plan_starts_a_stopped_compose_container_as_it_is():
    plan = plan_switch("a", "ca", [info("ca", status="exited", model="a", compose=True)])
    assert plan.start_existing.name == "ca" and plan.remove == ()


def test_plan_replaces_a_same_named_container_serving_another_model():
    plan = plan_switch("a", "ca", [info("ca", model="old")])
    assert [c.name for c in plan.stop] == ["ca"] and [c.name for c in plan.remove] == ["ca"]


def test_plan_refuses_a_foreign_container_with_the_name():
    with pytest.raises(SwitchError, match="'ca' exists without the project's label .* left alone"):
        plan_switch("a", "ca", [info("ca", managed=False)])
    plan = plan_switch("a", "ca", [info("other", managed=False)])
    assert plan.stop == ()  # a foreign running container is never stopped


@pytest.mark.parametrize("container, ready, state", [
    (None, False, State.STOPPED),
    (info("c", "running"), False, State.STARTING),
    (info("c", "created"), False, State.STARTING),
    (info("c", "running"), True, State.READY),
    (info("c", "removing"), False, State.STOPPING),
    (info("c", "exited", code=0), False, State.STOPPED),
    (info("c", "exited", code=143), False, State.STOPPED),
    (info("c", "exited", code=2), False, State.FAILED),
    (info("c", "exited", code=137, oom=True), False, State.FAILED),
    (info("c", "dead", code=1), False, State.FAILED),
])
def test_states(container, ready, state):
    assert derive_state(container, ready) is state


def test_container_info_from_docker_inspect():
    attrs = {"Id": "abc", "Name": "/chatvlmllm-vllm-qwen3-vl-2b",
             "Config": {"Labels": {LABEL_MANAGED: "true", LABEL_MODEL: "qwen3_vl_2b",
                                   "com.docker.compose.project": "chatvlmllm"}},
             "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True,
                       "StartedAt": "2026-11-27T10:00:00Z", "FinishedAt": "2026-11-27T10:05:00Z"}}
    c = ContainerInfo.from_attrs(attrs)
    assert (c.name, c.model, c.managed, c.compose, c.exit_code, c.oom_killed) == (
        "chatvlmllm-vllm-qwen3-vl-2b", "qwen3_vl_2b", True, True, 137, True)


# --- GPU-only parts, from recorded Docker and NVML answers ---------------------------------

RECORDED_INFO_WITH_TOOLKIT = {"Runtimes": {"io.containerd.runc.v2": {}, "nvidia": {"path": "nvidia-container-runtime"}, "runc": {}},
                              "DefaultRuntime": "runc", "DockerRootDir": "/var/lib/docker"}
RECORDED_INFO_WITHOUT = {"Runtimes": {"io.containerd.runc.v2": {}, "runc": {}}, "DefaultRuntime": "runc"}


def test_gpu_entry_gets_a_device_request_when_the_engine_has_the_toolkit(config):
    model = config.models["qwen3_vl_2b"]
    assert has_gpu_runtime(RECORDED_INFO_WITH_TOOLKIT) and not has_gpu_runtime(RECORDED_INFO_WITHOUT)
    spec = container_spec("qwen3_vl_2b", model, config, gpu_runtime=True)
    (request,) = spec["device_requests"]
    assert request["Count"] == 1 and request["Capabilities"] == [["gpu"]]
    assert "device_requests" not in container_spec("qwen3_vl_2b", model, config, gpu_runtime=False)


def test_container_spec_follows_the_config(config):
    model = config.models["dots_ocr"]
    spec = container_spec("dots_ocr", model, config, gpu_runtime=False)
    assert spec["image"] == "vllm/vllm-openai:v0.32.0"
    assert spec["name"] == "chatvlmllm-vllm-dots-ocr"
    assert spec["labels"] == {LABEL_MANAGED: "true", LABEL_MODEL: "dots_ocr"}
    assert spec["ports"] == {"8000/tcp": ("127.0.0.1", 8001)}
    assert spec["volumes"] == {"chatvlmllm-hf-cache": {"bind": "/root/.cache/huggingface", "mode": "rw"},
                               "chatvlmllm-vllm-cache": {"bind": "/root/.cache/vllm", "mode": "rw"}}
    assert spec["command"][:4] == ["--model", "rednote-hilab/dots.ocr", "--served-model-name", "dots-ocr"]
    assert "--trust-remote-code" in spec["command"] and "entrypoint" not in spec


class RecordedNVML:
    """Free memory as NVML reported it, second by second, after a 7.7 GB model stopped."""

    def __init__(self, free_gb):
        self.free_gb = list(free_gb)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        free = self.free_gb.pop(0) if len(self.free_gb) > 1 else self.free_gb[0]
        return GPUProbe((GPU(0, "NVIDIA GeForce RTX 5070 Ti", 12.0, free),))


def test_switch_waits_for_gpu_memory_to_come_back(config):
    nvml = RecordedNVML([3.1, 3.1, 6.9, 11.2])
    manager = SingleContainerManager(config, client=object(), gpu_probe=nvml)
    events = []
    free = manager._wait_for_gpu_memory(config.models["dots_ocr"], lambda s, m: events.append(m))
    assert free == (11.2, 12.0) and nvml.calls == 4
    # vLLM reserves gpu_memory_utilization (0.8) of the card's 12 GB, not the model's 8 GB
    assert events[0] == "waiting for GPU memory: 3.1 GB free, 9.6 GB needed"


def test_gpu_memory_wait_is_bounded_and_admission_refuses_with_numbers(config):
    short = config.model_copy(update={"switching": config.switching.model_copy(update={"gpu_memory_wait_s": 0.6})})
    manager = SingleContainerManager(short, client=object(), gpu_probe=RecordedNVML([9.0]))
    free, total = manager._wait_for_gpu_memory(config.models["dots_ocr"], lambda s, m: None)
    assert (free, total) == (9.0, 12.0)
    # 8 GB of weights would fit in 9 GB; what vLLM reserves does not.
    with pytest.raises(NotAvailable, match=r"^dots.ocr's vLLM server reserves 9.6 GB \(gpu_memory_utilization "
                                           r"0.8 × 12.0 GB\) but only 9.0 GB are free; close other GPU programs"):
        admit(config.models["dots_ocr"], config, free, total)
    assert admit(config.models["qwen3_vl_2b"], config, 9.0, 12.0) == []  # 0.6 × 12 = 7.2 GB


def test_a_model_that_cannot_fit_is_refused_before_its_container_is_created(config):
    class NoCreate:
        class containers:
            @staticmethod
            def list(**kwargs):
                return []

            @staticmethod
            def create(**kwargs):
                raise AssertionError("a container was created for a model that cannot fit")

    manager = SingleContainerManager(config, client=NoCreate(), gpu_probe=RecordedNVML([7.0]))
    short = config.switching.model_copy(update={"gpu_memory_wait_s": 0})
    manager.config = config.model_copy(update={"switching": short})
    with pytest.raises(NotAvailable, match=r"reserves 9.6 GB .* only 7.0 GB are free"):
        manager.switch("dots_ocr")


def test_no_nvml_means_no_wait(config):
    manager = SingleContainerManager(config, client=object(), gpu_probe=lambda: GPUProbe((), "no NVIDIA GPU found"))
    assert manager._wait_for_gpu_memory(config.models["dots_ocr"], lambda s, m: None) == (None, None)


def test_admission(config):
    assert admit(config.models["qwen3_vl_2b"], config, 11.0) == []
    phi = admit(config.models["dots_ocr"], config, 11.0)
    assert phi == [] and admit(config.models["phi35_vision"], config, None) == []
    big = config.models["dots_ocr"].model_copy(update={"vram_gb": 9.0})
    assert "above the recommended 8 GB" in admit(big, config, 11.0)[0]
    with pytest.raises(NotAvailable, match="over the 10 GB usable"):
        admit(big.model_copy(update={"vram_gb": 10.5}), config, 12.0)


def test_start_history_estimates_from_the_median(tmp_path):
    history = StartTimes(tmp_path)
    assert history.estimate("a") is None
    for seconds in (40, 42, 90):
        history.record("a", "cold", {"stop": 1.0, "start": seconds - 1.0})
    assert history.estimate("a") == 42
    assert history.estimate("a", "wake") is None
    history.record("a", "wake", {"stop": 0.5, "start": 0.25})
    assert history.estimate("a", "wake") == 0.75
    assert history.last("a", "cold").stages == {"stop": 1.0, "start": 89.0}


def test_start_history_reads_the_format_kept_before_stages(tmp_path):
    (tmp_path / "start_times.json").write_text('{"a": [40, 42, 90], "b": "garbage"}')
    history = StartTimes(tmp_path)
    assert history.estimate("a") == 42 and history.estimate("b") is None
    history.record("a", "wake", {"start": 2.0})
    assert history.estimate("a") == 42 and history.estimate("a", "wake") == 2.0


def test_start_history_skips_garbage_inside_a_model_and_records_over_it(tmp_path):
    """A hand-edited or foreign file must not break a status or fail a switch that already
    succeeded (the record comes after the model is ready)."""
    (tmp_path / "start_times.json").write_text(json.dumps({
        "a": {"wake": 5, "cold": [None, "x", {"stages": [1]}, {"stages": {"start": "slow"}},
                                  {"stages": {"start": 40.0}}]}}))
    history = StartTimes(tmp_path)
    assert history.estimate("a") == 40 and history.estimate("a", "wake") is None
    assert history.last("a", "wake") is None
    history.record("a", "wake", {"start": 2.0})
    history.record("a", "cold", {"start": 44.0})
    assert history.estimate("a", "wake") == 2.0 and history.estimate("a") == 42


def test_the_api_key_is_made_once_and_only_its_owner_reads_it(tmp_path):
    from managers.api_key import api_key

    key = api_key(tmp_path)
    assert len(key) >= 40 and api_key(tmp_path) == key
    assert (tmp_path / "vllm_api_key").stat().st_mode & 0o777 == 0o600


def test_the_container_gets_the_key_and_the_named_secrets(config):
    model = config.models["qwen3_vl_2b"]
    spec = container_spec("qwen3_vl_2b", model, config, gpu_runtime=False, api_key="k3y",
                          host_env={"HF_TOKEN": "hf_secret", "OTHER": "not passed"})
    assert spec["environment"] == {"HF_TOKEN": "hf_secret", "VLLM_API_KEY": "k3y"}
    assert "k3y" not in " ".join(spec["command"])  # never on a command line `docker inspect` or ps shows
    unset = container_spec("qwen3_vl_2b", model, config, gpu_runtime=False, api_key="k3y", host_env={})
    assert unset["environment"] == {"VLLM_API_KEY": "k3y"}  # a public model needs no token


class Refusing:
    """A Docker client whose engine fails in the ways the SDK reports it."""

    def __init__(self, exc):
        self.exc = exc

    @property
    def containers(self):
        raise self.exc


@pytest.mark.parametrize("make_exc, error, said", [
    (lambda: __import__("requests").exceptions.ConnectionError("Connection aborted"), NotAvailable,
     "The Docker engine stopped answering while {doing}; start Docker (e.g. sudo systemctl start docker) "
     "and try again."),
    (lambda: __import__("docker").errors.APIError("500 Server Error", explanation="no space left on device"),
     SwitchError, "Docker refused {doing}: no space left on device."),
])
def test_docker_failures_are_one_sentence(config, make_exc, error, said):
    manager = SingleContainerManager(config, client=Refusing(make_exc()), gpu_probe=lambda: GPUProbe(()))
    calls = {"starting chatvlmllm-vllm-qwen3-vl-2b": lambda: manager.switch("qwen3_vl_2b"),
             "reading the model containers": manager.status,
             "stopping the model containers": manager.stop_all}
    for doing, call in calls.items():
        with pytest.raises(error) as err:
            call()
        assert str(err.value) == said.format(doing=doing)


def test_clean_up_never_masks_the_first_error(config):
    """A container that exited while starting is reported as such, even when stopping it fails too."""
    import docker.errors

    class Exited:
        id, attrs = "c1", {"Name": "/x", "State": {"Status": "exited", "ExitCode": 2}}

        def reload(self):
            if getattr(self, "abandoning", False):
                raise docker.errors.APIError("engine hiccup during clean-up")

        def logs(self, tail):
            self.abandoning = True
            return b"error: unrecognized arguments: --bad\n"

    manager = SingleContainerManager(config, client=object(), gpu_probe=lambda: GPUProbe(()))
    with pytest.raises(SwitchError, match="exited with code 2 while starting: error: unrecognized arguments"):
        manager._wait_ready(Exited(), "qwen3_vl_2b", lambda *a: None, __import__("threading").Event())


def test_a_half_written_or_foreign_key_file_is_one_sentence(tmp_path, monkeypatch):
    from managers.api_key import api_key

    (tmp_path / "vllm_api_key").write_text("")
    with pytest.raises(NotAvailable, match="is empty; delete it and a new key is made"):
        api_key(tmp_path)
    monkeypatch.setenv("CHATVLMLLM_VLLM_API_KEY", "shared-key")  # another user's, given to this one
    assert api_key(tmp_path) == "shared-key"


def test_racing_processes_agree_on_one_key(tmp_path):
    """Eight processes make the key at once: they all read the same, whole key."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    # A folder of its own: the test's data dir may also appear under tmp_path.
    folder = tmp_path / "keys"
    folder.mkdir()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from managers.api_key import api_key; print(api_key(Path(sys.argv[2])))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(folder)], stdout=subprocess.PIPE,
                              text=True) for _ in range(8)]
    keys = {p.communicate()[0].strip() for p in procs}
    assert len(keys) == 1 and len(keys.pop()) >= 40
    assert [p.name for p in folder.iterdir()] == ["vllm_api_key"]  # no temporary file left


def test_every_container_keeps_both_caches_on_the_configured_volumes(config):
    """The compile cache outlives the container only if it is on a volume: the names come
    from the config, so tests and users never share one."""
    mine = config.model_copy(update={"hf_cache_volume": "hf-x", "vllm_cache_volume": "vllm-x"})
    for key, model in mine.models.items():
        if model.vllm and not model.vllm.remote:
            volumes = container_spec(key, model, mine, gpu_runtime=False)["volumes"]
            assert volumes["hf-x"] == {"bind": "/root/.cache/huggingface", "mode": "rw"}, key
            assert volumes["vllm-x"] == {"bind": "/root/.cache/vllm", "mode": "rw"}, key


# --- sleep mode: what the plan puts to sleep, stops (and why) or wakes ------------------------

from managers.containers import SleepFacts  # noqa: E402


def sleeper(name, model, can_sleep=True, compose=False):
    return ContainerInfo(id=name, name=name, status="running", managed=True, model=model, can_sleep=can_sleep,
                         compose=compose)


def facts(**kw):
    base = dict(levels={"a": 1, "c": 1}, kept_gb={}, weights_gb={"a": 4.0, "c": 4.0}, need_gb=10.0,
                total_gb=24.0, ram_gb=64.0)
    return SleepFacts(**{**base, **kw})


def test_plan_without_sleep_facts_stops_as_before():
    plan = plan_switch("b", "cb", [sleeper("ca", "a")])
    assert [c.name for c in plan.stop] == ["ca"] and plan.sleep == () and plan.why_stopped == {}


def test_plan_puts_a_sleep_capable_server_to_sleep_and_measures_it_the_first_time():
    plan = plan_switch("b", "cb", [sleeper("ca", "a")], facts=facts())
    assert plan.stop == () and [(s.info.name, s.level, s.measure) for s in plan.sleep] == [("ca", 1, True)]
    plan = plan_switch("b", "cb", [sleeper("ca", "a")], facts=facts(kept_gb={"a": 1.0}, levels={"a": 2}))
    assert [(s.info.name, s.level, s.measure) for s in plan.sleep] == [("ca", 2, False)]


def test_plan_wakes_a_sleeping_target_and_leaves_other_sleepers_asleep():
    plan = plan_switch("b", "cb", [sleeper("ca", "a"), sleeper("cb", "b")], asleep=frozenset({"ca", "cb"}),
                       facts=facts(kept_gb={"a": 1.0}))
    assert plan.wake.name == "cb" and plan.sleep == () and plan.stop == () and not plan.create


@pytest.mark.parametrize("container, kw, reason", [
    (sleeper("ca", "a"), dict(levels={"a": 0}), None),
    (sleeper("ca", "a"), dict(levels={"a": 0}, refusals={"a": "exposed"}), "exposed"),
    (sleeper("ca", "a", can_sleep=False), {}, "created without --enable-sleep-mode"),
    (sleeper("ca", "a"), dict(total_gb=None), "cannot be read (NVML)"),
    (sleeper("ca", "a"), dict(kept_gb={"a": 15.0}), "keeps 15.0 GB on the GPU, and with the 10.0 GB"),
    (sleeper("ca", "a"), dict(ram_gb=3.0), "keeps its 4 GB of weights in host RAM, but only 3.0 GB"),
])
def test_plan_stops_with_the_reason_where_sleep_does_not_fit(container, kw, reason):
    plan = plan_switch("b", "cb", [container], facts=facts(**kw))
    assert [c.name for c in plan.stop] == ["ca"] and plan.sleep == ()
    assert (plan.why_stopped.get("ca") is None) if reason is None else reason in plan.why_stopped["ca"]


def test_level_2_needs_no_host_ram_for_the_weights():
    plan = plan_switch("b", "cb", [sleeper("ca", "a")], facts=facts(levels={"a": 2}, ram_gb=0.5))
    assert [s.level for s in plan.sleep] == [2]


def test_sleepers_count_together_and_the_asleep_one_keeps_its_place():
    """ca sleeps already (6 GB kept), cc is awake (6 GB kept when asleep): with 10 GB for the
    target only one fits in 20 GB, so the awake one is stopped and the sleeper stays."""
    plan = plan_switch("b", "cb", [sleeper("cc", "c"), sleeper("ca", "a")], asleep=frozenset({"ca"}),
                       facts=facts(kept_gb={"a": 6.0, "c": 6.0}, total_gb=20.0))
    assert [c.name for c in plan.stop] == ["cc"] and plan.sleep == ()
    assert "keeps 12.0 GB" in plan.why_stopped["cc"]


def test_sleep_flags_and_state():
    spec_attrs = {"Id": "x", "Name": "/c", "Config": {"Cmd": ["--model", "m", "--enable-sleep-mode"],
                                                     "Env": ["VLLM_SERVER_DEV_MODE=1"], "Labels": {}},
                  "State": {"Status": "running"}}
    assert ContainerInfo.from_attrs(spec_attrs).can_sleep
    spec_attrs["Config"]["Env"] = []
    assert not ContainerInfo.from_attrs(spec_attrs).can_sleep
    assert derive_state(info("c"), True, asleep=True) is State.ASLEEP


def test_a_sleep_enabled_model_is_created_able_to_sleep(config):
    model = config.models["qwen3_vl_2b"]
    off = container_spec("qwen3_vl_2b", model, config, gpu_runtime=False)
    assert "--enable-sleep-mode" not in off["command"] and "VLLM_SERVER_DEV_MODE" not in off["environment"]
    on = config.model_copy(update={"switching": config.switching.model_copy(update={"sleep": 1})})
    spec = container_spec("qwen3_vl_2b", model, on, gpu_runtime=False)
    assert spec["command"][-1] == "--enable-sleep-mode" and spec["environment"]["VLLM_SERVER_DEV_MODE"] == "1"
    attrs = {"Config": {"Cmd": spec["command"], "Env": [f"{k}={v}" for k, v in spec["environment"].items()]}}
    assert ContainerInfo.from_attrs(attrs).can_sleep


def test_what_sleepers_kept_survives_garbage_in_its_file(tmp_path):
    """A bad entry is measured again, never a raw error failing the switch that reads it."""
    from managers.sleepers import Sleepers

    (tmp_path / "sleepers.json").write_text(json.dumps({
        "a": {"level": 1, "kept_gb": 1.5}, "b": {"level": "two", "kept_gb": "lots"}, "c": None,
        "d": {"level": True, "kept_gb": -3}, "e": [1, 2]}))
    sleepers = Sleepers(tmp_path)
    assert sleepers.kept_gb() == {"a": 1.5}
    assert [sleepers.level(k) for k in "abcde"] == [1, None, None, None, None]
    sleepers.record("b", 2, 0.75)
    assert sleepers.kept_gb() == {"a": 1.5, "b": 0.75} and sleepers.level("b") == 2


def test_available_host_memory_is_the_kernels_memavailable(tmp_path):
    from managers.host_memory import available_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   17000000 kB\n")
    assert available_bytes(meminfo) == 17_000_000 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert available_bytes(meminfo) is None and available_bytes(tmp_path / "missing") is None
