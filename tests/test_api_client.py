"""README's HTTP API examples, run as written against a live api.py: the curl walk-through in
bash and the Python client, each taken verbatim from the block after its "tested" marker, so
the README cannot drift from the API."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from managers.api_keys import APIKeys
from tests.api_server import ROOT, APIServer
from tests.helpers import ENGLISH, render_lines

MARKER = "<!-- tested: tests/test_api_client.py runs this block -->"
TIMEOUT = 120


def readme_block(language: str) -> str:
    """The fenced ``language`` block that follows the marker in README.md."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(re.escape(MARKER) + r"\s*```" + language + r"\n(.*?)```", readme, re.DOTALL)
    assert len(found) == 1, f"README.md has {len(found)} tested {language} blocks, not one"
    return found[0]


@pytest.fixture
def api(tmp_path):
    with APIServer(tmp_path) as server:
        yield server


@pytest.fixture
def folder(tmp_path):
    """Where the examples run: the invoice.png they send."""
    where = tmp_path / "client"
    where.mkdir()
    render_lines(ENGLISH).save(where / "invoice.png")
    return where


def run(command: list[str], folder, api: APIServer, key: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "CHATVLMLLM_API": api.url, "CHATVLMLLM_API_KEY": key}
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def test_the_readme_curl_walk_through_submits_follows_and_downloads(api, folder):
    done = run(["bash", "-euo", "pipefail", "-c", readme_block("bash")], folder, api)
    assert done.returncode == 0, done.stderr + api.log()[-2000:]
    assert (folder / "invoice.txt").read_text().startswith("Invoice number 4711")
    assert "event: page" in done.stdout and '"state": "done"' in done.stdout  # the events, to the end
    assert done.stdout.rstrip().endswith(ENGLISH[-1])  # /v1/ocr's answer is the text itself


def test_the_readme_python_client_runs_with_and_without_a_key(api, folder):
    example = readme_block("python")
    anonymous = run([sys.executable, "-c", example], folder, api)
    assert anonymous.returncode == 0, anonymous.stderr + api.log()[-2000:]
    assert "The quick brown fox" in anonymous.stdout

    # Once a key exists (cli.py api-key create NAME), the same client needs it and works with it.
    key = APIKeys(api.data_dir).create("readme")
    refused = run([sys.executable, "-c", example], folder, api)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "The request has no API key; send it as Authorization: Bearer KEY."
    keyed = run([sys.executable, "-c", example], folder, api, key)
    assert keyed.returncode == 0 and "The quick brown fox" in keyed.stdout
