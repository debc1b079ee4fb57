"""``api.py`` as a real uvicorn process for the API's tests: its own port, data dir and
config, started → waited for → killed or stopped, with its log attached to any failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
START_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def merged(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def write_config(path: Path, **changes) -> Path:
    """config.yaml with ``changes`` merged in (nested dicts merge key by key)."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    path.write_text(yaml.safe_dump(merged(base, changes), allow_unicode=True, sort_keys=False))
    return path


class APIServer:
    def __init__(self, tmp_path: Path, data_dir: Path | None = None, host: str = "127.0.0.1", env: dict | None = None,
                 config_path: Path | None = None, **config):
        """``config``: changes to the shipped config.yaml; or ``config_path``, a config file
        used as it is (one that other processes of a test use too)."""
        self.dir = tmp_path
        self.data_dir = data_dir or tmp_path / "api-data"
        self.config_path = config_path or write_config(tmp_path / f"api-config-{id(self)}.yaml", **config)
        self.host, self.port = host, free_port()
        self.env = {**os.environ, "CHATVLMLLM_DATA_DIR": str(self.data_dir), **(env or {})}
        self.log_path = tmp_path / f"api-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> APIServer:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "api.py"), "--config", str(self.config_path), "--host", self.host,
             "--port", str(self.port)], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"api.py exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"api.py did not answer /health in {START_S} s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no shutdown, no clean-up, as a crash or the OOM killer would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> APIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
