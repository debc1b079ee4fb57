"""Reaching the Docker engine (honours DOCKER_HOST), with one sentence when it cannot be."""

from __future__ import annotations

import os

from models.errors import NotAvailable
from models.i18n import Message, _

DEFAULT_HOST = "unix:///var/run/docker.sock"
CALL_TIMEOUT_S = 120


def _reach(timeout: float):
    """A pinged Docker client, or why there is none (a Message without its full stop)."""
    try:
        import docker
    except ImportError:
        return _("The Docker SDK is not installed — pip install docker")
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # DockerException, and requests' connection errors beneath it
        return _("Docker engine not reachable at {where} — start Docker (e.g. sudo systemctl start docker)",
                 where=os.environ.get("DOCKER_HOST") or DEFAULT_HOST)
    return client


def connect(timeout: float = 5):
    """A pinged Docker client, or NotAvailable saying Docker cannot be reached."""
    client = _reach(timeout)
    if isinstance(client, Message):
        raise NotAvailable(_("{reason}.", reason=client))
    # The short timeout is for noticing a dead engine; a busy one may take longer than that to
    # create or start a container (the NVIDIA hook), which is not "unreachable".
    client.api.timeout = CALL_TIMEOUT_S
    return client


def docker_error() -> Message | None:
    """None when the engine answers, else the sentence saying it does not."""
    client = _reach(timeout=2)
    if isinstance(client, Message):
        return client
    client.close()
    return None

