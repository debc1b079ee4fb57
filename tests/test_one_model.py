"""One model on the GPU, on a real Docker engine and real processes: under chaos (random
switches, reads, local loads and stops from six processes, random SIGKILLs, and API clients
whose jobs a real api.py reads on the same arbiter), after a crash whose pid a live process
then owns, and at the exact moments the old arbiter got wrong — each reached with a subclass
that holds a step or an event, not a sleep."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from managers import runs
from managers.arbiter import Arbiter
from managers.container_manager import SingleContainerManager
from managers.containers import State
from managers.locks import read_record
from managers.model_loader import ModelLoader
from managers.runtime import Runtime
from models.config import load_config
from models.errors import Cancelled, NotAvailable, SwitchError
from tests.api_server import APIServer
from tests.conftest import ROOT
from tests.containers import (
    Sampler, awake_on_fake_gpu, fake_entry, local_entry, on_fake_gpu, running_managed, use_fake_nvml, write_config,
)
from tests.helpers import ENGLISH, encode, render_lines

pytestmark = pytest.mark.docker
CHAOS_SECONDS = 75
# What the API's clients ask for: every model and mode the chaos workers switch to or load.
API_CHOICES = [("fake_a", "vllm"), ("fake_b", "vllm"), ("fake_c", "vllm"), ("dual", "vllm"), ("tiny2", "local"),
               ("dual", "local")]
FINAL = ("done", "failed", "cancelled")


@pytest.fixture
def setup(tmp_path, clean_docker, tiny_dirs, monkeypatch):
    """Three light servers, a tiny local model, and a model with both backends; CLI and
    worker processes see the same config and lock folder through the environment."""
    dual = {**fake_entry("dual"), "local": local_entry("dual", tiny_dirs["qwen2_vl"])["local"]}
    entries = {"fake_a": fake_entry("fake_a", delay=0.5), "fake_b": fake_entry("fake_b", delay=0.5),
               "fake_c": fake_entry("fake_c", delay=0.5), "tiny2": local_entry("tiny2", tiny_dirs["qwen2_vl"]),
               "dual": dual}
    path = write_config(tmp_path / "c.yaml", entries)
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    return load_config(path)


@pytest.fixture
def sleepy(tmp_path, setup, monkeypatch):
    """The same models on the fake NVML's card, fake_a sleeping at level 1 and fake_b at level 2
    on a switch away (fake_c and dual are stopped): the fake NVML's folder, where each server
    says whether it is awake."""
    nvml = use_fake_nvml(monkeypatch, tmp_path / "nvml")
    data = setup.model_dump(exclude_none=True)
    for key, level in (("fake_a", 1), ("fake_b", 2), ("fake_c", None), ("dual", None)):
        data["models"][key] = on_fake_gpu(data["models"][key], nvml, share=0.3, sleep=level)
    path = tmp_path / "sleepy.yaml"
    path.write_text(__import__("yaml").safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    return load_config(path), nvml


@pytest.fixture
def runtime(setup):
    made = Runtime(setup)
    yield made
    made.close()


class HeldManager(SingleContainerManager):
    """The real manager, whose start of ``key`` waits at ``release`` once ``reached`` is set:
    a switch held just before its server starts, past every check before it."""

    def __init__(self, config, key: str):
        super().__init__(config)
        self.key, self.reached, self.release = key, threading.Event(), threading.Event()

    def switch(self, key, on_event=None, cancel=None):
        if key == self.key:
            self.reached.set()
            self.release.wait(60)
        return super().switch(key, on_event, cancel)


def with_switching(tmp_path, config, **switching):
    """The same models with other switching settings, sharing the lock folder."""
    data = config.model_dump(exclude_none=True)
    data["switching"].update(switching)
    path = tmp_path / "c2.yaml"
    path.write_text(__import__("yaml").safe_dump(data, sort_keys=False))
    return load_config(path)


def until(condition, timeout: float = 120) -> None:
    """Wait for something the test caused (not a timing claim: the bound only ends a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "it never happened"
        time.sleep(0.1)


def waiting_events(events):
    return [e.message for e in events if e.stage == "waiting"]


class APIClient(threading.Thread):
    """A program using the API during the chaos: a one-page job for a random model and mode,
    followed to its end (cancelled if it outlasts the chaos by a minute), then the next one
    after a pause as short as the workers', until the deadline. ``ended``: each job as it
    ended, when (monotonic ``ended_at``), and with its pages where it was done."""

    def __init__(self, url: str, seed: int, deadline: float):
        super().__init__(daemon=True)
        self.url, self.rng, self.deadline = url, random.Random(seed), deadline
        self.page = encode(render_lines(ENGLISH[:2], size=(800, 300), top=40), "PNG")
        self.ended: list[dict] = []
        self.error: BaseException | None = None

    def run(self):
        try:
            while time.monotonic() < self.deadline:
                self.ended.append(self.job(*self.rng.choice(API_CHOICES)))
                time.sleep(self.rng.uniform(0.0, 0.3))
        except BaseException as exc:  # the test reports it
            self.error = exc

    def job(self, model: str, mode: str) -> dict:
        sent = requests.post(self.url + "/v1/jobs", files={"files": ("page.png", self.page)},
                             data={"model": model, "mode": mode}, timeout=60)
        assert sent.status_code == 202, sent.text
        job = sent.json()
        while job["state"] not in FINAL:
            if time.monotonic() > self.deadline + 60:
                requests.delete(f"{self.url}/v1/jobs/{job['id']}", timeout=60)
            time.sleep(0.2)
            job = requests.get(f"{self.url}/v1/jobs/{job['id']}", timeout=60).json()
        job["ended_at"] = time.monotonic()
        if job["state"] == "done":
            job["result"] = requests.get(f"{self.url}/v1/jobs/{job['id']}/result", timeout=60).json()
        return job


class Holders(threading.Thread):
    """The processes the arbiter's record names as holding the GPU, every 0.2 s, until stopped."""

    def __init__(self, arbiter: Arbiter):
        super().__init__(daemon=True)
        self.arbiter, self.pids, self.stopped = arbiter, set(), threading.Event()

    def run(self):
        while not self.stopped.wait(0.2):
            holder = self.arbiter.holder()
            if holder:
                self.pids.add(holder.pid)


def read(job: dict) -> bool:
    """Whether the API read the job's page: done, the page without error, and a vLLM model's
    page in the words of the server that model runs in (tests/fixtures/fake_vllm.py)."""
    if job["state"] != "done":
        return False
    page, = job["result"]["pages"]
    return page["error"] is None and (job["mode"] != "vllm" or page["text"] == f"Read by {job['model']}.")


@pytest.mark.local
def test_chaos_never_two_models_on_the_gpu(sleepy, tmp_path, clean_docker):
    """Two of the models sleep instead of stopping: one model *awake* is the promise, counted
    on the fake NVML's card (sleepers run beside the awake one)."""
    setup, nvml = sleepy
    arbiter = Arbiter(setup)
    sampler = Sampler(clean_docker, lock_dir=arbiter.dir, nvml_dir=nvml)
    # The API on the workers' config and data dir: the same arbiter, so its own switches,
    # loads and reads are what the sampler counts too.
    api = APIServer(tmp_path, data_dir=arbiter.dir, config_path=Path(os.environ["CHATVLMLLM_CONFIG"])).start()
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(8)
    workers: dict[int, subprocess.Popen] = {}
    seeds = iter(range(1000))

    def spawn():
        seed = next(seeds)
        out = open(logs / f"worker-{seed}.log", "w")
        workers[seed] = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fixtures" / "chaos_worker.py"),
                                          str(seed), str(CHAOS_SECONDS)], stdout=out, stderr=subprocess.STDOUT)

    holders = Holders(arbiter)
    sampler.start()
    holders.start()
    kills = 0
    deadline = time.monotonic() + CHAOS_SECONDS
    clients = [APIClient(api.url, seed, deadline) for seed in range(3)]
    try:
        for _ in range(6):
            spawn()
        for client in clients:
            client.start()
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(2, 6))
            seed = rng.choice([s for s, p in workers.items() if p.poll() is None] or [None])
            if seed is not None:
                workers[seed].send_signal(signal.SIGKILL)
                workers.pop(seed).wait()
                kills += 1
                spawn()
        workers_gone = time.monotonic()
        holders.stopped.set()
        for process in workers.values():
            process.send_signal(signal.SIGKILL)
            process.wait()
        workers.clear()
        for client in clients:  # their last jobs end once nobody else holds the GPU
            client.join(180)
        # What the dead left does not keep the API from loading a model or switching to one.
        late = APIClient(api.url, 99, time.monotonic() + 120)
        after = [late.job("tiny2", "local"), late.job("fake_a", "vllm")]
    finally:
        for process in workers.values():
            process.send_signal(signal.SIGKILL)
            process.wait()
        sampler.stop()
        api.stop()
    said = "".join(path.read_text() for path in logs.iterdir())
    assert sampler.samples > 100 and sampler.most <= 1, sampler.seen
    assert kills >= 8
    for action in ("switch ok", "read ok", "stop ok", "local ok"):  # every kind of request ran
        assert action in said, f"no '{action}' in the workers' logs"
    assert "BROKEN" not in said
    # The API took part: jobs in both modes amid the workers, each ended with a state (a
    # refusal under the chaos is one sentence), its process held the GPU among theirs, and
    # once they were killed it loaded a local model and switched to a vLLM one and read.
    jobs = [job for client in clients for job in client.ended]
    outcomes = [(job["model"], job["mode"], job["state"], job["error"]) for job in jobs]
    amid = f"{len([job for job in jobs if read(job) and job['ended_at'] < workers_gone])} read amid the chaos"
    assert all(client.error is None and not client.is_alive() for client in clients), \
        [client.error for client in clients]
    assert {mode for _model, mode, *_ in outcomes} == {"vllm", "local"}, outcomes
    assert all(state in FINAL and "unexpectedly" not in (error or "") for *_, state, error in outcomes), outcomes
    assert api.process.pid in holders.pids, (amid, outcomes, api.log()[-3000:])
    assert all(read(job) for job in after), after
    # The dead leave nothing behind: a switch that would wait forever for their pages does not wait.
    events = []
    patient = Arbiter(with_switching(tmp_path, setup, pages_wait_timeout_s=10**6))
    assert patient.switch("fake_a", events.append).state is State.READY
    assert waiting_events(events) == []
    assert awake_on_fake_gpu(nvml) == ["fake_a"] and "chatvlmllm-test-fake_a" in running_managed(clean_docker)
    # The workers' mix is mostly stops and refusals, so a sleep amid it is left to chance: what
    # the dead left must not keep a sleeper from sleeping and waking, one awake at a time.
    final = Sampler(clean_docker, lock_dir=arbiter.dir, nvml_dir=nvml)
    final.start()
    try:
        patient.switch("fake_b")
        slept = patient.manager.last_report.slept
        patient.switch("fake_a")
    finally:
        final.stop()
    assert slept == ["fake_a"] and patient.manager.last_report.woke
    assert final.most <= 1 and awake_on_fake_gpu(nvml) == ["fake_a"], final.seen


LEASE_HOLDER = """
import os, sys, time
sys.path.insert(0, {root!r})
from managers.arbiter import Arbiter
from models.config import load_config
arbiter = Arbiter(load_config())
with arbiter.lease("vllm", "fake_a", 5):
    print(os.getpid(), flush=True)
    time.sleep(300)
"""


def test_a_dead_readers_lease_does_not_block_when_its_pid_is_reused(setup, tmp_path, clean_docker):
    """In a container a restarted app is pid 1 again: the crashed one's pid is alive."""
    arbiter = Arbiter(setup)
    arbiter.switch("fake_a")
    in_own_pid_namespace = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable]
    crashed = subprocess.Popen([*in_own_pid_namespace, "-c", LEASE_HOLDER.format(root=str(ROOT))],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert crashed.stdout.readline().strip() == "1"  # it read as pid 1 in its namespace
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait()
    restarted = subprocess.Popen([*in_own_pid_namespace, "-c", "import time; time.sleep(300)"],
                                 start_new_session=True)
    try:
        records = [read_record(p) for p in (arbiter.dir / "leases").glob("slot-*.lock")]
        assert {"mode": "vllm", "model": "fake_a", "pages": 5, "pid": 1} in records  # the file stays
        events = []
        patient = Arbiter(with_switching(tmp_path, setup, pages_wait_timeout_s=10**6))
        assert patient.switch("fake_b", events.append).state is State.READY
        assert waiting_events(events) == []
    finally:
        os.killpg(restarted.pid, signal.SIGKILL)
        restarted.wait()


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from managers.runtime import Runtime
from models.config import load_config
Runtime(load_config()).loader.load_model("tiny2")
print("loaded", flush=True)
time.sleep(300)
"""


@pytest.mark.local
def test_a_refused_switch_leaves_the_local_model_recorded(setup, clean_docker):
    """Why 1: a refusal must not erase what holds the GPU, nor may a stop erase another's model."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT))], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "loaded"
        arbiter = Arbiter(setup)
        for _ in range(2):  # the second Switch is refused exactly like the first
            with pytest.raises(NotAvailable, match=f"Process {holder.pid} holds the GPU with Tiny tiny2"):
                arbiter.switch("fake_a")
            assert (arbiter.holder().mode, arbiter.holder().model, arbiter.holder().pid) == \
                ("local", "tiny2", holder.pid)
            assert running_managed(clean_docker) == []
        assert arbiter.stop() == []  # another process's model is not this process's to stop
        assert arbiter.holder().mode == "local"
    finally:
        holder.kill()
        holder.wait()
    assert Arbiter(setup).holder() is None  # its death frees the GPU at once
    assert Arbiter(setup).switch("fake_a").state is State.READY


def test_a_reader_never_starts_on_a_model_about_to_stop(setup, clean_docker):
    """Why 2: the lease is taken with the check that the model is the active one."""
    manager = HeldManager(setup, "fake_b")
    arbiter = Arbiter(setup, manager)
    arbiter.switch("fake_a")
    switching = threading.Thread(target=lambda: arbiter.switch("fake_b"))
    switching.start()
    try:
        assert manager.reached.wait(60)
        with pytest.raises(SwitchError, match="^A switch to Fake fake_b is under way; read the document when"):
            with arbiter.lease("vllm", "fake_a", 1):
                pass
    finally:
        manager.release.set()
        switching.join(60)
    with pytest.raises(SwitchError, match="^Fake fake_a is not the active model"):
        with arbiter.lease("vllm", "fake_a", 1):
            pass
    with arbiter.lease("vllm", "fake_b", 1):
        assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]


@pytest.mark.local
def test_leases_are_per_mode_and_local_reads_hold_one(setup, runtime, clean_docker):
    """Why 3: loading "dual" locally waits for the pages its vLLM server is reading; an
    Unload waits for the pages read with the local model."""
    arbiter = runtime.arbiter
    arbiter.switch("dual")
    waiting = threading.Event()
    done = {}
    with arbiter.lease("vllm", "dual", 2) as lease:
        def load():
            done["model"] = runtime.loader.load_model(
                "dual", on_progress=lambda m: waiting.set() if m == "waiting for 2 pages in progress" else None)

        loading = threading.Thread(target=load)
        loading.start()
        assert waiting.wait(60)
        assert running_managed(clean_docker) == ["chatvlmllm-test-dual"]  # not stopped under its pages
        lease.done(2)
    loading.join(120)
    assert done["model"].key == "dual" and running_managed(clean_docker) == []

    leased = []
    from tests.helpers import ENGLISH, render_lines
    from models.document import Page

    def on_page(done_pages, total, page):
        leased.extend(r for r in arbiter.leases.live() if r.get("mode") == "local")

    run = runs.read_document(runtime, runs.Choice("dual", "local"), [Page(0, render_lines(ENGLISH[:1], size=(300, 100)))],
                             on_page=on_page)
    assert run.result.pages[0].error is None
    assert leased and leased[0]["model"] == "dual"  # the read held a lease while it ran

    unloading_waits = threading.Event()
    with arbiter.lease("local", "dual", 1):
        unloading = threading.Thread(target=lambda: arbiter.release_local(
            lambda e: unloading_waits.set() if e.stage == "waiting" else None))
        unloading.start()
        assert unloading_waits.wait(60)
        assert runtime.loader.current() is not None  # not unloaded under the page being read
    unloading.join(60)
    assert runtime.loader.current() is None


@pytest.mark.local
def test_a_switch_during_a_local_load_waits_and_unloads_it(setup, runtime, clean_docker):
    """Why 4: session B's vLLM switch while session A's local load is under way."""
    reached, release, b_waits = threading.Event(), threading.Event(), threading.Event()

    class HeldLoader(ModelLoader):
        """The real loader, whose load waits once the arbiter has claimed the GPU for it."""

        def _load_claimed(self, *args):
            reached.set()
            release.wait(60)
            return super()._load_claimed(*args)

    runtime.loader = HeldLoader(setup, runtime.arbiter, runtime.gpu_thread)  # the arbiter unloads it
    sampler = Sampler(clean_docker, lock_dir=runtime.arbiter.dir)
    sampler.start()
    a = threading.Thread(target=lambda: runtime.loader.load_model("tiny2"))
    b = threading.Thread(target=lambda: runtime.arbiter.switch(
        "fake_a", lambda e: b_waits.set() if e.stage == "waiting" else None))
    try:
        a.start()
        assert reached.wait(60)
        b.start()
        assert b_waits.wait(60)
        assert running_managed(clean_docker) == []  # B starts nothing while A loads
    finally:
        release.set()
        a.join(120)
        b.join(120)
        sampler.stop()
    assert runtime.loader.current() is None  # B unloaded A's model before starting its own
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]
    assert sampler.most <= 1, sampler.seen


def test_a_switch_is_cancelled_by_its_own_button(tmp_path, clean_docker, monkeypatch):
    slow = write_config(tmp_path / "c.yaml", {"fake_a": fake_entry("fake_a", delay=60)})
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(slow))
    op = runs.switch(Runtime(load_config(slow)), "fake_a")
    until(lambda: any(e.stage == "starting" and e.log_line for e in op.events))
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"] and op.running
    op.cancel.set()
    with pytest.raises(Cancelled, match="The start of chatvlmllm-test-fake_a was cancelled; it was stopped."):
        op.wait()
    assert op.state == "cancelled" and running_managed(clean_docker) == []


def test_idle_unload_stops_what_this_process_started_and_only_that(tmp_path, clean_docker, monkeypatch):
    from managers.idle import idle_deadline
    from tests.containers import cli

    path = write_config(tmp_path / "c.yaml", {"fake_a": fake_entry("fake_a"), "fake_b": fake_entry("fake_b")},
                        idle_unload_s=1)
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    runtime = Runtime(load_config(path))
    assert cli("switch", "fake_b").returncode == 0  # started by another process
    runtime.watch_idle()
    try:
        assert idle_deadline(runtime) is None  # not this process's to unload
        time.sleep(3)  # three idle periods: the CLI's server must survive them
        assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]
        runs.switch(runtime, "fake_a").wait()
        assert idle_deadline(runtime) is not None
        # the record of what holds the GPU is cleared once the container is gone: wait for both
        until(lambda: not running_managed(clean_docker) and runtime.arbiter.holder() is None)
    finally:
        runtime.close()


DIES_MID_SWITCH = """
import sys, time
sys.path.insert(0, {root!r})
from managers.arbiter import Arbiter
from managers.container_manager import SingleContainerManager
from models.config import load_config

class Dying(SingleContainerManager):
    def switch(self, *args, **kwargs):
        print("stopping now", flush=True)
        time.sleep(300)

config = load_config()
Arbiter(config, Dying(config)).switch("fake_b")
"""


def test_a_switch_killed_midway_leaves_no_reader_on_a_stale_record(setup, clean_docker):
    """Why 5: the record still names fake_a, but the change that was replacing it died:
    a reader is refused until a switch finishes, rather than sent to a server that may be gone."""
    arbiter = Arbiter(setup)
    arbiter.switch("fake_a")
    dying = subprocess.Popen([sys.executable, "-c", DIES_MID_SWITCH.format(root=str(ROOT))],
                             stdout=subprocess.PIPE, text=True)
    assert dying.stdout.readline().strip() == "stopping now"
    dying.send_signal(signal.SIGKILL)
    dying.wait()
    with pytest.raises(SwitchError, match="^The last model switch ended without finishing"):
        with arbiter.lease("vllm", "fake_a", 1):
            pass
    arbiter.switch("fake_a")  # a finished change makes the record true again
    with arbiter.lease("vllm", "fake_a", 1):
        assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]


def test_giving_up_on_joining_a_starting_server_does_not_stop_it(tmp_path, clean_docker):
    """A second caller joins a server that is still loading and gives up (Cancel): the
    server the first caller is starting keeps running and becomes ready."""
    from managers.container_manager import SingleContainerManager

    signal_dir = tmp_path / "signal"
    signal_dir.mkdir()
    signal_dir.chmod(0o777)
    entry = fake_entry("fake_a", delay=0, extra_args=["--wait-for", "/signal/go"])
    entry["vllm"]["volumes"] = [f"{signal_dir}:/signal:ro"]
    config = load_config(write_config(tmp_path / "c.yaml", {"fake_a": entry}))
    first = SingleContainerManager(config)
    outcome = {}
    starting = threading.Thread(target=lambda: outcome.update(status=first.switch("fake_a")))
    starting.start()
    until(lambda: running_managed(clean_docker) == ["chatvlmllm-test-fake_a"])
    cancel = threading.Event()
    joining = threading.Thread(target=lambda: outcome.update(
        joined=_raised(lambda: SingleContainerManager(config).switch(
            "fake_a", lambda e: cancel.set() if e.stage == "starting" else None, cancel))))
    joining.start()
    joining.join(60)
    assert isinstance(outcome["joined"], Cancelled)
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]  # not stopped by the one who left
    (signal_dir / "go").touch()
    starting.join(60)
    assert outcome["status"].state is State.READY


def _raised(call):
    try:
        call()
    except Exception as exc:
        return exc
    return None
