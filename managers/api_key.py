"""The API key that guards the vLLM servers this app starts (vLLM's ``VLLM_API_KEY``).

Generated once and kept with mode 0600 in the lock folder, so every process of this user
(app sessions, the CLI) sends the same key and no other local user can read it. It is
passed to containers through their environment and never logged.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "vllm_api_key"


def api_key(directory: Path) -> str:
    path = directory / FILE_NAME
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
