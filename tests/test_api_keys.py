"""The HTTP API's keys, made with the real ``cli.py api-key`` and checked by a real api.py:
a key made works, a wrong, revoked or missing one is refused in one sentence; the key file
keeps only hashes. Before any key exists the API answers its own machine only, and api.py
warns when it listens beyond it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import requests
from starlette.requests import Request

from managers.api_keys import FILE_NAME, APIKeys
from models.errors import Unauthorized
from routes.auth import loopback, owner
from tests.api_calls import TIMEOUT, bearer, post, raw_answer, refusal, small_page, wait_for
from tests.api_server import ROOT, APIServer, free_port, write_config
from tests.helpers import ENGLISH

WARNING = "warning: the API listens on"


def cli(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "api-key", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT, env={**os.environ, "CHATVLMLLM_DATA_DIR": str(data_dir)})


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with APIServer(tmp_path_factory.mktemp("keys")) as server:
        yield server


def test_keys_made_by_the_cli_open_the_api_and_revoked_or_wrong_ones_do_not(api):
    # No key yet: this machine is served, as "local".
    assert requests.get(api.url + "/v1/models", timeout=TIMEOUT).status_code == 200
    listed = cli(api.data_dir, "list")
    assert listed.returncode == 0 and listed.stdout == "" and "No API keys yet" in listed.stderr

    made = cli(api.data_dir, "create", "tender-monitor")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("cvl_") and len(key) > 40 and made.stdout.count("\n") == 1
    other = cli(api.data_dir, "create", "colleague").stdout.strip()

    # Only the hash is kept, in a file only its owner reads.
    key_file = api.data_dir / FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    kept = key_file.read_text()
    assert key not in kept and key[4:] not in kept and other not in kept
    assert json.loads(kept)["tender-monitor"]["sha256"] == hashlib.sha256(key.encode()).hexdigest()

    submitted = post(api, [("a.png", small_page(ENGLISH))], key, model="tesseract")
    assert submitted.status_code == 202, submitted.text
    assert wait_for(api, submitted.json()["id"], key=key)["state"] == "done"
    # A job belongs to its key: another key is told there is no such job.
    refusal(requests.get(f"{api.url}/v1/jobs/{submitted.json()['id']}", headers=bearer(other), timeout=TIMEOUT),
            404, "no_such_job")

    # Once a key exists every request needs one, this machine's too.
    missing = requests.get(api.url + "/v1/models", timeout=TIMEOUT)
    assert refusal(missing, 401, "unauthorized") == "The request has no API key; send it as Authorization: Bearer KEY."
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = requests.get(api.url + "/v1/models", headers=bearer(key[:-2] + "xx"), timeout=TIMEOUT)
    assert refusal(wrong, 401, "unauthorized").startswith("The API key is not valid")
    russian = requests.get(api.url + "/v1/models", headers={**bearer("cvl_nope"), "Accept-Language": "ru"},
                           timeout=TIMEOUT)
    assert refusal(russian, 401, "unauthorized").startswith("Ключ API недействителен")

    listed = cli(api.data_dir, "list")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["colleague", "tender-monitor"]
    assert key not in listed.stdout + listed.stderr

    revoked = cli(api.data_dir, "revoke", "tender-monitor")
    assert revoked.returncode == 0, revoked.stderr
    refusal(requests.get(api.url + "/v1/models", headers=bearer(key), timeout=TIMEOUT), 401, "unauthorized")
    assert requests.get(api.url + "/v1/models", headers=bearer(other), timeout=TIMEOUT).status_code == 200

    # The CLI's refusals: one sentence and exit code 2, as its other usage errors.
    for args, sentence in [(("revoke", "tender-monitor"), "error: There is no key called tender-monitor; the keys "
                                                          "are: colleague.\n"),
                           (("create", "colleague"), "error: There is a key called colleague already; revoke it "
                                                     "first or choose another name.\n"),
                           (("create", "two words"), "error: A key's name is 1 to 64 characters without spaces, "
                                                     "e.g. tender-monitor.\n"),
                           # else its bearer would own the jobs this machine sent before any key existed
                           (("create", "local"), "error: The name local stands for this machine's own requests "
                                                 "before any key exists; choose another.\n")]:
        refused = cli(api.data_dir, *args)
        assert (refused.returncode, refused.stderr, refused.stdout) == (2, sentence, "")
    assert WARNING not in api.log()  # it listens on loopback: nothing to warn about


def test_a_key_is_checked_before_the_upload_is_read(api):
    """A request without a valid key is refused on its headers: the server does not wait for
    (nor spool) a body it would throw away."""
    keys = APIKeys(api.data_dir)
    if not keys.any():  # run alone: with no key, this machine would be let in
        keys.create("gatekeeper")
    status, body = raw_answer(api.port, b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nContent-Type: multipart/form-data; "
                                        b"boundary=b\r\nContent-Length: 20000000\r\n\r\n", [b"x" * 1000])
    assert status.startswith("HTTP/1.1 401 ") and body["error"]["code"] == "unauthorized"  # 20 MB never sent


def non_loopback_address() -> str:
    """An address of this machine that is not loopback: a client from it is a remote one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # sends nothing: only picks the interface a packet would leave by
            address = probe.getsockname()[0]
    except OSError:
        address = ""
    if address and not loopback(address):
        return address
    found = [a for a in subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
             if ":" not in a and not loopback(a)]
    assert found, "this machine has no address but loopback; the test needs one to play a remote client"
    return found[0]


def test_bound_beyond_loopback_it_warns_and_serves_only_its_machine_until_a_key_exists(tmp_path):
    address, port = non_loopback_address(), free_port()
    data = tmp_path / "data"
    err = open(tmp_path / "stderr.txt", "w+")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "api.py"), "--config", str(write_config(tmp_path / "config.yaml")),
         "--host", "0.0.0.0", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
        env={**os.environ, "CHATVLMLLM_DATA_DIR": str(data)})
    remote, local = f"http://{address}:{port}", f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None and time.monotonic() < deadline, open(tmp_path / "stderr.txt").read()
            try:
                if requests.get(remote + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert refusal(requests.get(remote + "/v1/models", timeout=TIMEOUT), 401, "unauthorized").startswith(
            "This API has no keys yet, so it answers only its own machine")
        assert requests.get(local + "/v1/models", timeout=TIMEOUT).status_code == 200

        key = APIKeys(data).create("remote")
        assert requests.get(remote + "/v1/models", headers=bearer(key), timeout=TIMEOUT).status_code == 200
        refusal(requests.get(remote + "/v1/models", timeout=TIMEOUT), 401, "unauthorized")
    finally:
        process.terminate()
        process.wait(20)
    err.seek(0)
    warnings = [line for line in err.read().splitlines() if line.startswith(WARNING)]
    assert warnings == ["warning: the API listens on 0.0.0.0, reachable from the network; every request needs an "
                        "API key (cli.py api-key create NAME)."]


def request_from(host: str, keys: APIKeys, authorization: str | None = None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    app = SimpleNamespace(state=SimpleNamespace(keys=keys))
    return Request({"type": "http", "method": "GET", "path": "/v1/models", "headers": headers,
                    "client": (host, 40000), "app": app, "state": {}})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_with_no_key_a_loopback_client_is_local(tmp_path, host):
    """``::ffff:127.0.0.1`` is how a server bound on ``::`` sees a client of 127.0.0.1."""
    assert owner(request_from(host, APIKeys(tmp_path))) == "local"


@pytest.mark.parametrize("host", ["192.0.2.7", "10.0.0.1", "fe80::1", "::ffff:192.0.2.7", "localhost.example"])
def test_with_no_key_any_other_client_is_refused(tmp_path, host):
    with pytest.raises(Unauthorized, match="answers only its own machine"):
        owner(request_from(host, APIKeys(tmp_path)))
    key = APIKeys(tmp_path).create("someone")
    assert owner(request_from(host, APIKeys(tmp_path), f"Bearer {key}")) == "someone"
    with pytest.raises(Unauthorized, match="has no API key"):
        owner(request_from("127.0.0.1", APIKeys(tmp_path)))


def test_keys_made_at_the_same_time_are_all_kept(tmp_path):
    """Two admins (or two scripts) making keys at once: none overwrites another's."""
    made, start = {}, threading.Barrier(2)

    def make(prefix: str) -> None:
        start.wait(TIMEOUT)
        for n in range(15):
            made[f"{prefix}-{n}"] = APIKeys(tmp_path).create(f"{prefix}-{n}")

    threads = [threading.Thread(target=make, args=(prefix,)) for prefix in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    keys = APIKeys(tmp_path)
    assert [name for name, _made in keys.listed()] == sorted(made)
    assert all(keys.owner(key) == name for name, key in made.items())
