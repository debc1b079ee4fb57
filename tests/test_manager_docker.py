"""SingleContainerManager and the arbiter on a real Docker engine. Light fake servers
stand in for vLLM where the manager, not vLLM, is under test; test_vllm_docker.py runs the
real vLLM server."""

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from managers.arbiter import Arbiter
from managers.container_manager import SingleContainerManager
from managers.containers import LABEL_MANAGED, LABEL_MODEL, State
from models.config import load_config
from models.errors import Cancelled, NotAvailable, Superseded, SwitchError
from tests.conftest import ROOT
from tests.containers import RUNTIME_IMAGE, Sampler, cli, fake_entry, running_managed, write_config

pytestmark = pytest.mark.docker


@pytest.fixture
def fakes(tmp_path, clean_docker, monkeypatch):
    """A config with four light model servers; CLI children see it through the environment."""
    path = write_config(tmp_path / "config.yaml", {f"fake_{n}": fake_entry(f"fake_{n}") for n in "abcd"})
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    return load_config(path)


def events_of(calls):
    return [e.message for e in calls]


def test_switch_a_b_a_keeps_one_container(fakes, clean_docker):
    arbiter = Arbiter(fakes)
    sampler = Sampler(clean_docker)
    sampler.start()
    try:
        for key in ("fake_a", "fake_b", "fake_a"):
            events = []
            status = arbiter.switch(key, on_event=events.append)
            assert status.state is State.READY and status.key == key
            assert running_managed(clean_docker) == [f"chatvlmllm-test-{key}"]
    finally:
        sampler.stop()
    assert sampler.samples > 10 and sampler.most == 1, sampler.seen
    assert "stopping fake_b" in events_of(events)
    assert events[-1].stage == "ready"
    assert any(e.log_line.startswith("INFO") for e in events if e.stage == "starting")
    assert (arbiter.holder().mode, arbiter.holder().model) == ("vllm", "fake_a")
    statuses = arbiter.manager.status()
    assert statuses["fake_a"].state is State.READY and statuses["fake_b"].state is State.STOPPED
    assert arbiter.manager.history.estimate("fake_a") > 0


def test_switch_to_the_active_model_joins_it(fakes, clean_docker):
    manager = SingleContainerManager(fakes)
    manager.switch("fake_a")
    first = clean_docker.containers.get("chatvlmllm-test-fake_a").id
    manager.switch("fake_a")
    assert clean_docker.containers.get("chatvlmllm-test-fake_a").id == first
    assert manager.last_report.stopped == []


def test_six_processes_switch_at_once(tmp_path, clean_docker, monkeypatch):
    entries = {f"fake_{n}": fake_entry(f"fake_{n}", delay=1.5) for n in range(6)}
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(write_config(tmp_path / "config.yaml", entries)))
    sampler = Sampler(clean_docker)
    sampler.start()
    procs = [subprocess.Popen([sys.executable, "cli.py", "switch", key], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for key in entries]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    sampler.stop()
    assert sampler.most == 1, sampler.seen
    ready = [out for code, out, err in outcomes if code == 0]
    superseded = [err for code, out, err in outcomes if code == 3]
    assert len(ready) + len(superseded) == 6, outcomes
    assert ready and all(" ready on port " in out for out in ready)
    assert all("superseded by Fake fake_" in err for err in superseded)
    running = running_managed(clean_docker)
    assert len(running) == 1
    winner = running[0].removeprefix("chatvlmllm-test-")
    assert any(out.startswith(f"{winner} ready on port") for out in ready)  # the last switch won


def test_a_switch_waits_for_pages_in_progress(fakes, clean_docker):
    arbiter = Arbiter(fakes)
    arbiter.switch("fake_a")
    result = {}
    seen = {"waiting for 3 pages in progress": threading.Event(), "waiting for 1 page in progress": threading.Event()}

    def on_event(event):
        if event.message in seen:
            seen[event.message].set()

    with arbiter.lease("vllm", "fake_a", pages=3) as lease:
        thread = threading.Thread(target=lambda: result.setdefault("status", arbiter.switch("fake_b", on_event)))
        thread.start()
        assert seen["waiting for 3 pages in progress"].wait(60)
        assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]
        lease.done(2)
        assert seen["waiting for 1 page in progress"].wait(60)
        assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]
        with pytest.raises(SwitchError, match="A switch to Fake fake_b is under way"):
            with arbiter.lease("vllm", "fake_a", pages=1):
                pass
    thread.join(timeout=60)
    assert result["status"].key == "fake_b"
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]


def test_pages_wait_is_bounded(tmp_path, clean_docker):
    config = load_config(write_config(tmp_path / "c.yaml", {"fake_a": fake_entry("fake_a"), "fake_b": fake_entry("fake_b")},
                                      pages_wait_timeout_s=1))
    arbiter = Arbiter(config)
    arbiter.switch("fake_a")
    with arbiter.lease("vllm", "fake_a", pages=2):
        with pytest.raises(SwitchError, match="2 pages are still being read after 1 s"):
            arbiter.switch("fake_b")
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]


def test_a_container_that_dies_while_starting_fails_at_once(tmp_path, clean_docker):
    broken = fake_entry("fake_a", extra_args=["--no-such-flag"], timeout=600)
    config = load_config(write_config(tmp_path / "c.yaml", {"fake_a": broken}))
    manager = SingleContainerManager(config)
    started = time.monotonic()
    with pytest.raises(SwitchError) as err:
        manager.switch("fake_a")
    assert time.monotonic() - started < 60  # from the exit, not the 600 s timeout
    assert "chatvlmllm-test-fake_a exited with code 2 while starting" in str(err.value)
    assert "unrecognized arguments: --no-such-flag" in err.value.log_tail
    assert manager.status()["fake_a"].state is State.FAILED
    assert "exited with code 2" in manager.status()["fake_a"].detail
    assert "unrecognized arguments" in manager.logs("fake_a", tail=5)

    fixed = load_config(write_config(tmp_path / "c2.yaml", {"fake_a": fake_entry("fake_a")}))
    assert SingleContainerManager(fixed).switch("fake_a").state is State.READY


def test_a_crash_after_loading_is_reported_with_its_log(tmp_path, clean_docker):
    crashing = fake_entry("fake_a", extra_args=["--crash-after", "0.5"], timeout=600)
    manager = SingleContainerManager(load_config(write_config(tmp_path / "c.yaml", {"fake_a": crashing})))
    with pytest.raises(SwitchError, match="exited with code 3 while starting: ERROR RuntimeError: pretend CUDA out of memory"):
        manager.switch("fake_a")


def test_start_timeout_stops_the_half_started_container(tmp_path, clean_docker):
    slow = fake_entry("fake_a", delay=60, timeout=2)
    manager = SingleContainerManager(load_config(write_config(tmp_path / "c.yaml", {"fake_a": slow})))
    with pytest.raises(SwitchError, match="was not ready after 2 s .*it was stopped"):
        manager.switch("fake_a")
    assert running_managed(clean_docker) == []


def test_port_taken_by_another_program(tmp_path, clean_docker):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        entry = fake_entry("fake_a", port=s.getsockname()[1])
        manager = SingleContainerManager(load_config(write_config(tmp_path / "c.yaml", {"fake_a": entry})))
        with pytest.raises(SwitchError, match="chatvlmllm-test-fake_a could not start: .*"):
            manager.switch("fake_a")
    assert clean_docker.containers.list(all=True, filters={"name": "chatvlmllm-test-fake_a"}) == []


def test_containers_without_the_label_are_never_touched(fakes, clean_docker):
    foreign = [clean_docker.containers.run(RUNTIME_IMAGE, ["sleep", "300"], name=name, detach=True)
               for name in ("chatvlmllm-test-foreign", "chatvlmllm-test-fake_c")]
    try:
        arbiter = Arbiter(fakes)
        arbiter.switch("fake_a")
        arbiter.switch("fake_b")
        assert arbiter.stop() == ["fake_b"]
        with pytest.raises(SwitchError, match="'chatvlmllm-test-fake_c' exists without the project's label"):
            arbiter.switch("fake_c")
        for c in foreign:
            c.reload()
            assert c.status == "running"
        assert arbiter.stop() == []  # nothing to stop is not an error
    finally:
        for c in foreign:
            c.remove(force=True)


def test_compose_created_container_is_recognised_and_started(fakes, clean_docker):
    from managers.containers import container_spec
    spec = container_spec("fake_a", fakes.models["fake_a"], fakes, gpu_runtime=False)
    spec["labels"].update({"com.docker.compose.project": "chatvlmllm", "com.docker.compose.service": "vllm-fake-a"})
    created = clean_docker.containers.create(**spec)  # as `docker compose create` leaves it
    manager = SingleContainerManager(fakes)
    manager.switch("fake_a")
    assert clean_docker.containers.get(created.id).status == "running"
    manager.switch("fake_b")
    created.reload()
    assert created.status == "exited"  # stopped, and kept for compose


def test_cli_switch_status_logs_stop(fakes, clean_docker):
    done = cli("switch", "fake_a")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("fake_a ready on port ")
    assert "starting chatvlmllm-test-fake_a" in done.stderr
    status = cli("status")
    line = next(line for line in status.stdout.splitlines() if line.startswith("fake_a"))
    assert line.split()[1] == "ready"
    assert "Loading weights" in cli("logs", "fake_a", "--tail", "20").stdout
    stop = cli("stop")
    assert stop.returncode == 0 and stop.stdout.strip() == "stopped: fake_a"
    assert cli("stop").stdout.strip() == "nothing was running"
    assert running_managed(clean_docker) == []


def test_dead_docker_daemon_is_one_sentence_and_cpu_mode_still_works(fakes, tmp_path):
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    for args in (["status"], ["switch", "fake_a"], ["stop"]):
        done = cli(*args, env=env)
        assert done.returncode != 0
        assert done.stderr.strip() == ("error: Docker engine not reachable at unix:///nonexistent/docker.sock "
                                       "— start Docker (e.g. sudo systemctl start docker).")
    from tests.helpers import ENGLISH, cer, encode, render_lines
    (tmp_path / "p.png").write_bytes(encode(render_lines(ENGLISH), "PNG"))
    done = cli("ocr", tmp_path / "p.png", "--model", "tesseract", env=env)
    assert done.returncode == 0 and cer("\n".join(ENGLISH), done.stdout) <= 0.02


def test_superseded_unit(fakes, clean_docker):
    """A waiting request overtaken by a newer one for another model says so."""
    from managers.locks import FileLock

    arbiter = Arbiter(fakes)
    busy = FileLock(arbiter.dir / "switch.lock")  # another change under way
    busy.acquire()
    outcome = {}
    waiting = threading.Thread(target=lambda: outcome.update(error=_catch(lambda: arbiter.switch("fake_a"))))
    waiting.start()
    while not any(w.get("model") == "fake_a" for w in arbiter.wants.live()):
        time.sleep(0.05)
    with arbiter._state() as state:  # a newer request for fake_b, from a live requester
        state.seq += 1
        newer = arbiter.wants.take({"seq": state.seq, "model": "fake_b"})
    waiting.join(5)
    busy.release()
    newer.release()
    assert isinstance(outcome["error"], Superseded)
    assert str(outcome["error"]) == "The switch to Fake fake_a was superseded by Fake fake_b."
    assert running_managed(clean_docker) == []


def test_a_dead_requester_supersedes_nobody(fakes, clean_docker):
    """A newer request whose process died is not a request any more."""
    arbiter = Arbiter(fakes)
    with arbiter._state() as state:
        state.seq += 1
        arbiter.wants.take({"seq": state.seq + 100, "model": "fake_b"}).release()  # taken, then gone
    assert arbiter.switch("fake_a").state is State.READY


def _catch(fn):
    try:
        fn()
    except Exception as exc:
        return exc
    return None


def test_unknown_or_non_vllm_model(fakes):
    with pytest.raises(NotAvailable, match="Tesseract 5 has no vLLM backend"):
        SingleContainerManager(fakes).switch("tesseract")


def test_labels_on_created_containers(fakes, clean_docker):
    SingleContainerManager(fakes).switch("fake_a")
    c = clean_docker.containers.get("chatvlmllm-test-fake_a")
    assert c.labels[LABEL_MANAGED] == "true" and c.labels[LABEL_MODEL] == "fake_a"
    bindings = c.attrs["HostConfig"]["PortBindings"]["8000/tcp"][0]
    assert bindings["HostIp"] == "127.0.0.1"


def test_sidebar_switches_and_stops_with_progress(fakes, clean_docker):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="mode").set_value("vllm").run()
    at.sidebar.selectbox(key="model_vllm").set_value("fake_b").run()
    assert "**Active model:** none" in [m.value for m in at.sidebar.markdown]
    at.sidebar.button(key="vllm_switch").click().run()
    assert not at.exception and not at.sidebar.error
    assert "**Active model:** Fake fake_b (ready)" in [m.value for m in at.sidebar.markdown]
    assert any(c.value.startswith("port ") for c in at.sidebar.caption)
    assert at.sidebar.button(key="vllm_switch").disabled  # already the active one
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_b"]
    at.sidebar.button(key="vllm_stop").click().run()
    assert running_managed(clean_docker) == []
    assert "**Active model:** none" in [m.value for m in at.sidebar.markdown]


def test_sidebar_shows_a_failed_start_as_one_sentence_and_a_log(tmp_path, clean_docker, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    broken = fake_entry("fake_a", extra_args=["--no-such-flag"])
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(write_config(tmp_path / "c.yaml", {"fake_a": broken})))
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="mode").set_value("vllm").run()
    at.sidebar.button(key="vllm_switch").click().run()
    assert not at.exception
    assert at.sidebar.error[0].value.startswith("chatvlmllm-test-fake_a exited with code 2 while starting")
    assert "unrecognized arguments" in at.sidebar.expander[0].code[0].value


def test_a_missing_image_is_pulled_as_its_own_stage(tmp_path, clean_docker):
    # A registry on loopback that is not there: the pull fails at once and stays on this machine.
    image = "127.0.0.1:9/chatvlmllm-test/not-built:0"
    entry = fake_entry("fake_a")
    entry["vllm"]["image"] = image
    manager = SingleContainerManager(load_config(write_config(tmp_path / "c.yaml", {"fake_a": entry},
                                                              min_free_disk_gb=0)))
    events = []
    with pytest.raises(SwitchError, match=rf"Could not pull {image} .*docker pull {image}\."):
        manager.switch("fake_a", events.append)
    assert [e.stage for e in events][-1] == "pulling"
    full = SingleContainerManager(load_config(write_config(tmp_path / "d.yaml", {"fake_a": entry},
                                                           min_free_disk_gb=10**6)))
    with pytest.raises(NotAvailable, match=rf"GB are free under .*; pulling {image} needs about 1,000,000 GB "
                                           r"\(switching.min_free_disk_gb\)"):
        full.switch("fake_a")
    assert running_managed(clean_docker) == []


class StalledRegistry(ThreadingHTTPServer):
    """A registry on loopback that says hello on /v2/ and then never sends a manifest;
    ``asked`` is set when the engine asks for one."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), StallingHandler)
        self.asked = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()


class StallingHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v2/":
            self.send_response(200)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        self.server.asked.set()
        while self.connection.recv(1024):  # no answer: wait for the engine to hang up
            pass

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def command_line(process: psutil.Process) -> list[str]:
    """A child's command line; a zombie (another test's child, not yet reaped) has none."""
    try:
        return process.cmdline()
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return []


def test_cancel_stops_a_stalled_image_pull(tmp_path, docker_client):
    registry = StalledRegistry()
    image = f"127.0.0.1:{registry.server_address[1]}/chatvlmllm-test/stalled:0"
    entry = fake_entry("stalled_pull")
    entry["vllm"]["image"] = image
    manager = SingleContainerManager(load_config(write_config(tmp_path / "c.yaml", {"stalled_pull": entry},
                                                              min_free_disk_gb=0)))
    cancel, events, ended = threading.Event(), [], []

    def switch():
        try:
            manager.switch("stalled_pull", events.append, cancel)
        except Exception as exc:
            ended.append(exc)

    switching = threading.Thread(target=switch, daemon=True)
    switching.start()
    try:
        assert registry.asked.wait(60)  # the pull is under way and stalled
        cancel.set()
        switching.join(60)  # a guard, not a timing: without the cancel it never ends
        assert not switching.is_alive()
        [error] = ended
        assert isinstance(error, Cancelled)
        assert str(error) == f"The pull of {image} was cancelled; what was downloaded is kept."
        assert [e.stage for e in events][-1] == "pulling"
        assert not [p for p in psutil.Process().children() if "managers.pulling" in command_line(p)]
        assert docker_client.containers.list(all=True, filters={"name": "chatvlmllm-test-stalled_pull"}) == []
    finally:
        registry.shutdown()
        registry.server_close()
