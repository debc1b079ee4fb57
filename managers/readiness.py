"""Is an OpenAI-compatible server ready: /health answers 200 and /v1/models lists the model."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request


def api_ready(base_url: str, served_model_name: str, timeout: float = 2.0,
              api_key: str | None = None) -> tuple[bool, str]:
    """(ready, why not). ``base_url`` is the server root, e.g. http://127.0.0.1:8002;
    ``api_key`` is sent to /v1 (vLLM leaves /health open)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout) as response:
            if response.status != 200:
                return False, f"/health answered {response.status}"
        request = urllib.request.Request(f"{base_url}/v1/models", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            served = [m.get("id") for m in json.load(response).get("data", [])]
    except urllib.error.HTTPError as exc:
        why = " (wrong or missing API key)" if exc.code == 401 else ""
        return False, f"{exc.url.removeprefix(base_url)} answered {exc.code}{why}"
    except (OSError, ValueError) as exc:  # refused, reset, timed out, not JSON
        return False, f"not answering yet ({type(exc).__name__})"
    if served_model_name not in served:
        return False, f"/v1/models lists {served}, not {served_model_name!r}"
    return True, ""


def endpoint_ready(backend) -> tuple[bool, str]:
    """A remote endpoint's readiness, checked with its own key (``api_key_env``)."""
    key = os.environ.get(backend.api_key_env or "") or None
    return api_ready(backend.base_url, backend.served_model_name, api_key=key)
