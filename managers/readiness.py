"""Is an OpenAI-compatible server ready: /health answers 200 and /v1/models lists the model."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from models.i18n import Message, _


def api_ready(base_url: str, served_model_name: str, timeout: float = 2.0,
              api_key: str | None = None) -> tuple[bool, Message]:
    """(ready, why not). ``base_url`` is the server root, e.g. http://127.0.0.1:8002;
    ``api_key`` is sent to /v1 (vLLM leaves /health open)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout) as response:
            if response.status != 200:
                return False, _("{path} answered {status}", path="/health", status=str(response.status))
        request = urllib.request.Request(f"{base_url}/v1/models", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            served = [m.get("id") for m in json.load(response).get("data", [])]
    except urllib.error.HTTPError as exc:
        path = exc.url.removeprefix(base_url)
        if exc.code == 401:
            return False, _("{path} answered {status} (wrong or missing API key)", path=path, status=str(exc.code))
        return False, _("{path} answered {status}", path=path, status=str(exc.code))
    except (OSError, ValueError) as exc:  # refused, reset, timed out, not JSON
        return False, _("not answering yet ({reason})", reason=type(exc).__name__)
    if served_model_name not in served:
        return False, _("/v1/models lists {served}, not {name}", served=str(served), name=repr(served_model_name))
    return True, Message("")


def endpoint_ready(backend) -> tuple[bool, Message]:
    """A remote endpoint's readiness, checked with its own key (``api_key_env``)."""
    key = os.environ.get(backend.api_key_env or "") or None
    return api_ready(backend.base_url, backend.served_model_name, api_key=key)
