"""The API key that guards the vLLM servers this app starts (vLLM's ``VLLM_API_KEY``).

Generated once and kept with mode 0600 in the lock folder, so every process of this user
(app sessions, the CLI) sends the same key and no other local user can read it; another
user who shares the lock folder is given the key in ``CHATVLMLLM_VLLM_API_KEY``. It is
passed to containers through their environment and never logged. The file is written
whole under a temporary name and then linked into place, so nobody ever reads half a key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from models.errors import NotAvailable
from models.i18n import _

FILE_NAME = "vllm_api_key"
ENV = "CHATVLMLLM_VLLM_API_KEY"


def api_key(directory: Path) -> str:
    if key := os.environ.get(ENV, "").strip():
        return key
    path = directory / FILE_NAME
    for _attempt in range(2):
        try:
            key = path.read_text().strip()
        except FileNotFoundError:
            _create(path)
            continue
        except PermissionError:
            raise NotAvailable(_("The vLLM API key in {path} belongs to another user; ask them for it and set "
                                 "{variable}, or use a lock folder of your own (switching.lock_dir).",
                                 path=path, variable=ENV)) from None
        if not key:
            raise NotAvailable(_("The vLLM API key file {path} is empty; delete it and a new key is made.", path=path))
        return key
    raise NotAvailable(_("The vLLM API key could not be made in {directory}.", directory=directory))


def _create(path: Path) -> None:
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32))
    try:
        os.link(tmp, path)  # fails if another process made it first: theirs is the key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
