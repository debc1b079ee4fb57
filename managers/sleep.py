"""Talking to a vLLM server's sleep endpoints; every failure is one SwitchError sentence.

What the endpoints do, as vLLM 0.32 serves them (vllm/entrypoints/serve/dev/sleep/api_router.py
and serve/dev/rpc/api_router.py, registered only with VLLM_SERVER_DEV_MODE=1; docs:
https://docs.vllm.ai/en/latest/features/sleep_mode/):

- ``POST /sleep?level=N`` (1: weights to host RAM, 2: weights dropped; the KV cache is dropped
  either way). Its ``mode`` defaults to ``abort`` — requests in flight are cut — so this
  client asks for ``mode=wait`` (older servers ignore the parameter), and the manager waits
  until ``/metrics`` shows none in flight before it asks at all (vllm#45520: a sleep with
  requests in flight can kill the engine).
- ``POST /wake_up``, optionally ``?tags=weights`` / ``?tags=kv_cache`` (several tags may be
  given); it answers ``{"status": "awake"|"sleeping"}``.
- ``GET /is_sleeping`` answers ``{"is_sleeping": bool}``.
- ``POST /collective_rpc {"method": "reload_weights"}``: after level 2 the weights' memory
  comes back empty, so they are read again before the KV cache is woken — the sequence of the
  docs' level-2 example: wake_up?tags=weights, reload_weights, wake_up?tags=kv_cache.
- ``/metrics``: the Prometheus gauges ``vllm:num_requests_running`` and
  ``vllm:num_requests_waiting``, one sample per label set (engine, model).

None of these is behind ``--api-key`` (it guards /v1 only); the key is sent anyway.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from models.errors import SwitchError
from models.i18n import _

IN_FLIGHT_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")


class SleepEndpoints:
    def __init__(self, base_url: str, name: str, api_key: str | None = None, timeout: float = 60.0):
        self.base_url, self.name, self.timeout = base_url, name, timeout
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _call(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        headers = {**self.headers, **({"Content-Type": "application/json"} if body is not None else {})}
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise SwitchError(_("{container} answered {status} to {path}.", container=self.name,
                                status=str(exc.code), path=path.split("?")[0])) from None
        except OSError as exc:  # refused, reset, timed out
            raise SwitchError(_("{container} did not answer {path} ({reason}).", container=self.name,
                                path=path.split("?")[0], reason=type(exc).__name__)) from None

    def in_flight(self) -> int:
        """Requests the server is running or has queued, summed over its label sets."""
        text = self._call("GET", "/metrics", timeout=5.0).decode(errors="replace")
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            series, _space, value = line.rpartition(" ")  # vLLM writes no timestamps
            if series.split("{", 1)[0] in IN_FLIGHT_GAUGES:
                try:
                    total += float(value)
                except ValueError:
                    raise SwitchError(_("{container}'s /metrics could not be read ({line}).",
                                        container=self.name, line=line[:100])) from None
        return int(total)

    def is_sleeping(self) -> bool:
        raw = self._call("GET", "/is_sleeping", timeout=5.0)
        try:
            return bool(json.loads(raw)["is_sleeping"])
        except (ValueError, KeyError, TypeError):
            raise SwitchError(_("{container} answered /is_sleeping with something other than its JSON.",
                                container=self.name)) from None

    def sleep(self, level: int) -> None:
        self._call("POST", f"/sleep?level={level}&mode=wait")

    def wake(self, level: int) -> None:
        """Level 1: one call brings weights and KV cache back. Level 2: the weights' memory,
        then the weights read again, then the KV cache."""
        if level == 2:
            self._call("POST", "/wake_up?tags=weights")
            self._call("POST", "/collective_rpc", {"method": "reload_weights"})
            self._call("POST", "/wake_up?tags=kv_cache")
        else:
            self._call("POST", "/wake_up")
