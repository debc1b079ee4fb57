"""docker-compose.yml and config.yaml describe the same servers, with flags vLLM accepts."""

import json
import subprocess

import pytest
import yaml

from managers.containers import (CONTAINER_PORT, HF_CACHE_IN_CONTAINER, LABEL_MANAGED, LABEL_MODEL,
                                 VLLM_CACHE_IN_CONTAINER)
from tests.conftest import ROOT
from tests.containers import VLLM_VENV


def compose_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {svc["labels"][LABEL_MODEL]: (name, svc) for name, svc in compose["services"].items()}


def test_compose_defines_the_same_servers_as_the_config(config):
    services = compose_services()
    assert set(services) == {k for k, m in config.models.items() if m.vllm and not m.vllm.remote}
    for key, (name, svc) in services.items():
        v = config.models[key].vllm
        assert svc["image"] == v.image, key
        assert svc["container_name"] == v.container_name, key
        assert svc["command"] == v.command(), key
        assert svc.get("entrypoint") == v.entrypoint, key
        assert svc["ports"] == [f"{v.host}:{v.port}:{CONTAINER_PORT}"], key
        assert svc["labels"] == {LABEL_MANAGED: "true", LABEL_MODEL: key}, key
        assert svc["profiles"] == [name], key  # none starts on a bare `docker compose up`
        assert svc["shm_size"] == v.shm_size, key
        # secrets come from the host by name; the API key too (see the file's header)
        assert svc["environment"] == [*v.env_from_host, "VLLM_API_KEY"], key
        assert not v.env, key
        assert f"{config.hf_cache_volume}:{HF_CACHE_IN_CONTAINER}" in svc["volumes"], key
        assert f"{config.vllm_cache_volume}:{VLLM_CACHE_IN_CONTAINER}" in svc["volumes"], key
        assert "/health" in " ".join(svc["healthcheck"]["test"]), key
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        assert bool(devices and devices[0]["capabilities"] == ["gpu"]) == v.gpu, key


def test_compose_names_the_config_volumes_as_they_are(config):
    """Compose prefixes a volume with the project's name unless ``name:`` says otherwise; the
    app's containers and compose's must share one HF cache and one compile cache."""
    volumes = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["volumes"]
    for volume in (config.hf_cache_volume, config.vllm_cache_volume):
        assert volumes[volume] == {"name": volume}


def test_ports_are_published_on_loopback_only():
    for key, (name, svc) in compose_services().items():
        assert all(port.startswith("127.0.0.1:") for port in svc["ports"]), key


@pytest.mark.vllm
def test_every_flag_is_accepted_by_the_pinned_vllm(config):
    python = VLLM_VENV / "bin" / "python"
    assert python.exists(), "run scripts/install.sh --test to install vLLM's CPU build"
    commands = {f"config:{k}": m.vllm.command() for k, m in config.models.items() if m.vllm}
    commands |= {f"compose:{name}": svc["command"] for name, svc in compose_services().values()}
    commands["control: a flag 0.32 dropped"] = ["--model", "m", "--disable-log-requests"]
    done = subprocess.run([str(python), str(ROOT / "tests" / "fixtures" / "check_vllm_flags.py")],
                          input=json.dumps(commands), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    verdicts = json.loads(done.stdout)
    assert "unrecognized arguments: --disable-log-requests" in verdicts.pop("control: a flag 0.32 dropped")
    assert verdicts == {name: None for name in verdicts}
