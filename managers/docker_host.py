"""Reaching the Docker engine (honours DOCKER_HOST), with one sentence when it cannot be."""

from __future__ import annotations

import os

from models.errors import NotAvailable

DEFAULT_HOST = "unix:///var/run/docker.sock"
CALL_TIMEOUT_S = 120


def _unreachable() -> str:
    where = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    return f"Docker engine not reachable at {where} — start Docker (e.g. sudo systemctl start docker)"


def connect(timeout: float = 5):
    """A pinged Docker client, or NotAvailable saying Docker cannot be reached."""
    try:
        import docker
        import docker.errors
    except ImportError:
        raise NotAvailable("The Docker SDK is not installed — pip install docker.") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception:  # DockerException, and requests' connection errors beneath it
        raise NotAvailable(_unreachable() + ".") from None
    # The short timeout is for noticing a dead engine; a busy one may take longer than that to
    # create or start a container (the NVIDIA hook), which is not "unreachable".
    client.api.timeout = CALL_TIMEOUT_S
    return client


def docker_error() -> str | None:
    """None when the engine answers, else the sentence saying it does not."""
    try:
        connect(timeout=2).close()
    except NotAvailable as exc:
        return str(exc).rstrip(".")
    return None

