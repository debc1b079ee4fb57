"""The HTTP API's keys: ``cli.py api-key create NAME`` makes one, the API checks bearers.

Only a key's SHA-256 is kept (``api_keys.json`` in the data dir, mode 0600): a key is 32
random bytes, so a fast hash is enough and a stolen file gives no key away. The key itself
is shown once, when it is made. The file is written whole under a temporary name and then
moved into place, so a reader never sees half of it; a change (read, change, write) holds
``api_keys.lock``, so two made at once are both kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from managers.locks import FileLock
from models.errors import ConfigError
from models.i18n import _

FILE_NAME = "api_keys.json"
LOCK_NAME = "api_keys.lock"
PREFIX = "cvl_"
# Jobs sent from this machine before any key existed belong to this name (routes/auth.py).
RESERVED = "local"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class APIKeys:
    def __init__(self, directory: Path):
        self.path = directory / FILE_NAME

    def _read(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(_("The API key file {path} cannot be read ({reason}); move it aside and create the "
                                "keys again.", path=str(self.path), reason=str(exc))) from None

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, dict]]:
        """The keys, written back when the block ends; one change at a time."""
        with FileLock(self.path.with_name(LOCK_NAME)):
            keys = self._read()
            yield keys
            self._write(keys)

    def _write(self, keys: dict[str, dict]) -> None:
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(keys, handle, indent=1)
        tmp.replace(self.path)

    def listed(self) -> list[tuple[str, float]]:
        """(name, when it was made) of every key, by name."""
        return sorted((name, record.get("created", 0.0)) for name, record in self._read().items())

    def any(self) -> bool:
        return bool(self._read())

    def create(self, name: str) -> str:
        """A new key called ``name``; the key, which is not kept anywhere."""
        if not name.strip() or len(name) > 64 or any(c.isspace() for c in name):
            raise ConfigError(_("A key's name is 1 to 64 characters without spaces, e.g. tender-monitor."))
        if name == RESERVED:
            raise ConfigError(_("The name {name} stands for this machine's own requests before any key exists; "
                                "choose another.", name=name))
        with self._changing() as keys:
            if name in keys:
                raise ConfigError(_("There is a key called {name} already; revoke it first or choose another name.",
                                    name=name))
            key = PREFIX + secrets.token_urlsafe(32)
            keys[name] = {"sha256": _digest(key), "created": time.time()}
        return key

    def revoke(self, name: str) -> None:
        with self._changing() as keys:
            if keys.pop(name, None) is None:
                raise ConfigError(_("There is no key called {name}; the keys are: {known}.",
                                    name=name, known=", ".join(sorted(keys)) or "-"))

    def owner(self, key: str) -> str | None:
        """The name of the key ``key``, or None when it is none of them."""
        digest = _digest(key)
        found = None
        for name, record in self._read().items():  # every key compared, in constant time each
            if hmac.compare_digest(record.get("sha256", ""), digest):
                found = name
        return found
