import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.config import load_config  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """Each test gets its own data directory and the shipped config."""
    monkeypatch.setenv("CHATVLMLLM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CHATVLMLLM_CONFIG", raising=False)


@pytest.fixture
def config():
    return load_config(ROOT / "config.yaml")


@pytest.fixture
def limits(config):
    return config.limits


@pytest.fixture
def runtime(config):
    """A runtime of its own for the test (the module's ``config``), closed after it."""
    from managers.runtime import Runtime

    made = Runtime(config)
    yield made
    made.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test is a failed test: a skip there would hide a missing service."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"


# --- Docker and vLLM: real engine, real images built offline; a missing one fails, never skips.

@pytest.fixture(scope="session")
def docker_client():
    from managers.docker_host import connect
    from models.errors import NotAvailable

    try:
        client = connect()
    except NotAvailable as exc:
        pytest.fail(f"{exc} The docker tests need a running engine (scripts/install.sh --test starts one).")
    from tests.containers import ensure_images
    ensure_images(client)
    return client


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tests.containers import build_tiny_model
    folder = tmp_path_factory.mktemp("tiny-qwen2-vl")
    folder.chmod(0o755)
    return build_tiny_model(folder)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """Tiny random-weight Qwen2-VL and Qwen3-VL for local mode, built with this venv's Transformers."""
    from tests.containers import build_tiny_model
    return {family: build_tiny_model(tmp_path_factory.mktemp(family), family, python=sys.executable)
            for family in ("qwen2_vl", "qwen3_vl")}


@pytest.fixture
def clean_docker(docker_client):
    """No test-made model containers before or after the test (others are left alone)."""
    from tests.containers import remove_test_containers
    remove_test_containers(docker_client)
    yield docker_client
    remove_test_containers(docker_client)
