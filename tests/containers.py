"""Docker fixtures' building blocks: the offline test image, the tiny vLLM model, config
entries for light fake servers and real vLLM servers, and a sampler of running containers."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import yaml

from managers.containers import LABEL_MANAGED
from managers.locks import held_by_someone
from tests.conftest import ROOT

BASE_IMAGE = "chatvlmllm-test/base:bookworm"
RUNTIME_IMAGE = "chatvlmllm-test/runtime:1"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
VLLM_VENV = ROOT / ".venv-vllm"
TEST_VOLUME = "chatvlmllm-test-hf-cache"
# The tests' vLLM compile cache: never the user's chatvlmllm-vllm-cache.
TEST_VLLM_CACHE_VOLUME = "chatvlmllm-test-vllm-cache"
# Every container a test makes carries this too; tests clean up by it, never by the product's
# label alone, so a real model container on the machine is left alone.
TEST_LABEL = "test.chatvlmllm.created-by"


def ensure_images(client) -> None:
    """Build the test images offline: a debootstrap base, then Python and vLLM's libraries."""
    import docker.errors

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        work = Path(tempfile.mkdtemp(prefix="chatvlmllm-rootfs-"))
        try:
            subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(work / "root"), DEBIAN_MIRROR],
                           check=True, capture_output=True)
            subprocess.run(["tar", "-C", str(work / "root"), "-cf", str(work / "root.tar"), "."], check=True)
            repository, tag = BASE_IMAGE.split(":")
            client.api.import_image(src=str(work / "root.tar"), repository=repository, tag=tag)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    client.images.build(path=str(ROOT / "tests" / "fixtures"), tag=RUNTIME_IMAGE, rm=True)


def vllm_site_packages() -> Path:
    found = sorted(VLLM_VENV.glob("lib/python3.*/site-packages"))
    assert found, f"the vLLM virtualenv is missing at {VLLM_VENV}: run scripts/install.sh --test"
    return found[0]


def build_tiny_model(out: Path, family: str = "qwen2_vl", python: Path = VLLM_VENV / "bin" / "python") -> Path:
    subprocess.run([str(python), str(ROOT / "tests" / "fixtures" / "tiny_vlm.py"), str(out), family],
                   check=True, capture_output=True)
    for path in out.iterdir():  # the container's server may run as another user
        path.chmod(0o644)
    out.chmod(0o755)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_entry(name: str, delay: float = 1.0, extra_args=(), timeout: float = 120, port=None) -> dict:
    return {
        "name": f"Fake {name}", "vram_gb": 1.0, "tasks": {"text": {"label": "Text"}},
        "vllm": {
            "image": RUNTIME_IMAGE, "container_name": f"chatvlmllm-test-{name}", "port": port or free_port(),
            "model": f"fake/{name}", "served_model_name": name, "gpu": False,
            "gpu_memory_utilization": 0.5, "max_model_len": 8192,
            "args": ["--startup-delay", str(delay), *extra_args],
            "entrypoint": ["python3", "/srv/fake_vllm.py"], "shm_size": "64m", "start_timeout_s": timeout,
            "labels": {TEST_LABEL: "pytest"},
        },
    }


FAKE_NVML = ROOT / "tests" / "fixtures" / "fake_nvml"
FAKE_NVML_TOTAL_GB = 24.0


def on_fake_gpu(entry: dict, nvml_dir: Path, share: float = 0.5, asleep_gb: float = 1.0,
                sleep: int | None = None) -> dict:
    """A light server that holds memory of the fake NVML's card (tests/fixtures/fake_nvml):
    ``share`` of it while awake (what vLLM reserves: gpu_memory_utilization × total),
    ``asleep_gb`` while asleep; ``sleep``: its vllm.sleep."""
    v = entry["vllm"]
    v["gpu_memory_utilization"] = share
    v["args"] = [*v["args"], "--fake-nvml-dir", "/nvml", "--fake-gpu-gb", str(share * FAKE_NVML_TOTAL_GB),
                 "--fake-asleep-gb", str(asleep_gb)]
    v["volumes"] = [*v.get("volumes", []), f"{nvml_dir}:/nvml"]
    if sleep is not None:
        v["sleep"] = sleep
    return entry


def use_fake_nvml(monkeypatch, folder: Path) -> Path:
    """The fake NVML first on sys.path and PYTHONPATH (child processes), reading ``folder``,
    which the servers of ``on_fake_gpu`` write into; the real bindings come back after the test."""
    import importlib.util

    folder.mkdir(exist_ok=True)
    folder.chmod(0o777)  # the servers write as the container's user
    monkeypatch.setenv("FAKE_NVML_DIR", str(folder))
    monkeypatch.setenv("FAKE_NVML_TOTAL_GB", str(FAKE_NVML_TOTAL_GB))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_NVML), os.environ.get("PYTHONPATH")])))
    monkeypatch.syspath_prepend(str(FAKE_NVML))
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML / "pynvml.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "pynvml", fake)  # an earlier test may have imported the real one
    return folder


def awake_on_fake_gpu(nvml_dir: Path) -> list[str]:
    """The servers the fake NVML's card holds awake (their weights on it)."""
    found = []
    for path in nvml_dir.glob("*.json"):
        try:
            if json.loads(path.read_text()).get("awake"):
                found.append(path.stem)
        except (OSError, ValueError):
            continue  # being replaced or removed right now
    return found


def volume_files(client, volume: str, label: str = "pytest") -> dict[str, bytes]:
    """Every file of a named volume by its path there, copied out of a container that is
    created but never started: a short-lived `cat` or `find` container's output can be lost
    between its exit and the log stream (CI once read '' that way); a copy reads the volume."""
    holder = client.containers.create(RUNTIME_IMAGE, ["true"], labels={TEST_LABEL: label},
                                      volumes={volume: {"bind": "/c", "mode": "ro"}})
    try:
        chunks, _ = holder.get_archive("/c/.")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            return {m.name.removeprefix("./"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    finally:
        holder.remove(force=True)


def structured_outputs_args() -> list[str]:
    """The structured-outputs setting the shipped vLLM servers are started with (config.yaml),
    so test servers hold answers to a schema the way users' servers do."""
    args = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]["qwen2_vl_2b"]["vllm"]["args"]
    at = args.index("--structured-outputs-config")
    return args[at:at + 2]


def vllm_entry(name: str, model_dir: Path, timeout: float = 400) -> dict:
    sp = str(vllm_site_packages())
    return {
        "name": f"Tiny Qwen2-VL {name}", "vram_gb": 1.0, "max_pixels": 401408,
        "tasks": {"text": {"label": "Text", "prompt": "Read the text."}},
        "requests": {"max_tokens": 16},
        "vllm": {
            "image": RUNTIME_IMAGE, "container_name": f"chatvlmllm-test-{name}", "port": free_port(),
            "model": "/models/tiny", "served_model_name": name, "gpu": False,
            "gpu_memory_utilization": 0.5, "max_model_len": 2048,
            "args": ["--enforce-eager", *structured_outputs_args()],
            "env": {"PYTHONPATH": sp, "VLLM_CPU_KVCACHE_SPACE": "1"},
            "entrypoint": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
            "volumes": [f"{sp}:{sp}:ro", f"{model_dir}:/models/tiny:ro"],
            "shm_size": "1g", "start_timeout_s": timeout, "labels": {TEST_LABEL: "pytest"},
        },
    }


def local_entry(name: str, path, factor=28, **extra) -> dict:
    """A tiny random-weight model (tests/fixtures/tiny_vlm.py) for local mode on the CPU."""
    return {"name": f"Tiny {name}", "vram_gb": 1.0, "max_pixels": 401408, "min_pixels": 4096,
            "resize_factor": factor, "requests": {"max_tokens": 8},
            "tasks": {"text": {"label": "Text", "prompt": "Read the text."}},
            "local": {"model_id": f"tiny/{name}", "path": str(path), "dtype": "float32", **extra}}


def write_config(path: Path, entries: dict, local: dict | None = None, **switching) -> Path:
    """The shipped config with these models; ``local``: settings of its ``local:`` section."""
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["local"].update(local or {})
    data["default_model"] = "tesseract"
    data["hf_cache_volume"] = TEST_VOLUME
    data["vllm_cache_volume"] = TEST_VLLM_CACHE_VOLUME
    data["switching"].update({"stop_timeout_s": 10, "gpu_memory_wait_s": 0, **switching})
    data["models"] = {**entries, "tesseract": data["models"]["tesseract"]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def running_managed(client) -> list[str]:
    return [c.name for c in client.containers.list(filters={"label": f"{LABEL_MANAGED}=true"})]


def remove_test_containers(client) -> None:
    for c in client.containers.list(all=True, filters={"label": [f"{LABEL_MANAGED}=true", TEST_LABEL]}):
        c.remove(force=True)


class Sampler(threading.Thread):
    """Counts what holds the GPU as the kernel sees it, every 0.2 s: running model containers
    (or, with ``nvml_dir``, the servers awake on the fake NVML's card: sleepers run beside
    the one awake), plus a live local-model claim when ``lock_dir`` is given; ``most`` is
    the highest count."""

    def __init__(self, client, every: float = 0.2, lock_dir: Path | None = None, nvml_dir: Path | None = None):
        super().__init__(daemon=True)
        self.client, self.every, self.lock_dir, self.nvml_dir = client, every, lock_dir, nvml_dir
        self.most, self.samples, self.seen = 0, 0, []
        self._stop_event = threading.Event()

    def models(self) -> list[str]:
        return awake_on_fake_gpu(self.nvml_dir) if self.nvml_dir else running_managed(self.client)

    def holders(self) -> list[str]:
        if self.lock_dir is None:
            return self.models()
        before = held_by_someone(self.lock_dir / "local.lock")
        names = self.models()
        # held before and after the listing: held while the listed containers ran
        local = before and held_by_someone(self.lock_dir / "local.lock")
        return names + (["local model"] if local else [])

    def run(self):
        while not self._stop_event.is_set():
            names = self.holders()
            self.most = max(self.most, len(names))
            self.samples += 1
            if len(names) > 1:
                self.seen.append(names)
            time.sleep(self.every)

    def stop(self) -> Sampler:
        self._stop_event.set()
        self.join()
        return self


def cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)
