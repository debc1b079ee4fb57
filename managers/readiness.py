"""Is an OpenAI-compatible server ready: /health answers 200 and /v1/models lists the model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def api_ready(base_url: str, served_model_name: str, timeout: float = 2.0) -> tuple[bool, str]:
    """(ready, why not). ``base_url`` is the server root, e.g. http://127.0.0.1:8002."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout) as response:
            if response.status != 200:
                return False, f"/health answered {response.status}"
        with urllib.request.urlopen(f"{base_url}/v1/models", timeout=timeout) as response:
            served = [m.get("id") for m in json.load(response).get("data", [])]
    except urllib.error.HTTPError as exc:
        return False, f"{exc.url.removeprefix(base_url)} answered {exc.code}"
    except (OSError, ValueError) as exc:  # refused, reset, timed out, not JSON
        return False, f"not answering yet ({type(exc).__name__})"
    if served_model_name not in served:
        return False, f"/v1/models lists {served}, not {served_model_name!r}"
    return True, ""
