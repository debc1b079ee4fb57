"""What the API's dispatcher (managers/jobs/dispatch.py) and ``cli.py worker``
(managers/jobs/remote_worker.py) share through Redis with ``jobs.backend: redis``: the
keys, the connection and its one-sentence failure, and the records both sides read.

    chatvlmllm:worker:<name>           a live worker (``Heartbeat``): it expires
                                       HEARTBEAT_TTL_S after its last refresh, so a worker
                                       killed with ``kill -9`` is gone within seconds
    chatvlmllm:dispatcher              the one API handing jobs out (``dispatcher_id``): it
                                       expires DISPATCHER_TTL_S after its last turn
    chatvlmllm:workers                 the names of workers seen, so a dead one is cleaned up
    rq:queue:chatvlmllm:worker:<name>  the worker's own RQ queue, which only it reads
    chatvlmllm:running                 job id → the ``Attempt`` the API gave out; a worker
                                       whose attempt is no longer there stops reading
    chatvlmllm:results                 what workers read, in order (``pack``): pages,
                                       documents, ends; the API removes an item only after
                                       its store has it

The SQLite store on the API's machine stays the record of every job; Redis carries only the
work in flight, so losing it loses no accepted job (they are interrupted and queued again).
"""

from __future__ import annotations

import base64
import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from rq.serializers import JSONSerializer

from managers.jobs.store import Document, Spec
from models.errors import ConfigError, NotAvailable
from models.i18n import _

PREFIX = "chatvlmllm:"
WORKERS = PREFIX + "workers"
RUNNING = PREFIX + "running"
RESULTS = PREFIX + "results"
DISPATCHER = PREFIX + "dispatcher"
DISPATCHER_TTL_S = 30
HEARTBEAT_TTL_S = 5
HEARTBEAT_EVERY_S = 1.0
JOB_FUNCTION = "managers.jobs.remote_worker.read"
# RQ pickles a job's arguments by default, and a worker would unpickle whatever it finds in
# Redis: JSON it is, so a worker loads data from Redis, never code.
SERIALIZER = JSONSerializer
# How a worker's reading of a job ended besides done and failed: the API withdrew the job
# (cancelled), or the worker was told to stop and handed the job back unfinished.
CANCELLED_END, GIVEN_BACK = "cancelled", "back"


def heartbeat_key(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def queue_name(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def connect(url: str, timeout: float | None = 10) -> redis.Redis:
    """A client for ``url`` that answered a PING (``timeout``: None for a client that blocks
    waiting for jobs); NotAvailable in one sentence otherwise."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=3)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise unreachable(url, exc) from exc
    return client


def unreachable(url: str, exc: Exception) -> NotAvailable:
    return NotAvailable(_("Redis at {url} does not answer ({reason}); start redis-server or set jobs.redis_url.",
                          url=shown(url), reason=str(exc) or type(exc).__name__))


def dispatcher_id(store: Path) -> str:
    """Who hands the jobs out: the same API started again (same machine, same store) takes
    over at once; another API is refused while this one's key lives."""
    return f"{socket.gethostname()}:{store.resolve()}"


def refuse_other_dispatcher(client: redis.Redis, url: str, me: str) -> None:
    """ConfigError when another API hands out jobs on this Redis: each one withdraws the
    attempts its own store does not run and takes every result, so two would cancel each
    other's jobs and drop each other's pages."""
    holder = client.get(DISPATCHER)
    if holder is not None and holder.decode() != me:
        raise ConfigError(_("Another API server hands out jobs on {url} ({holder}); give each API a Redis "
                            "database of its own (the /N at the end of jobs.redis_url), shared with its workers.",
                            url=shown(url), holder=holder.decode()))


def shown(url: str) -> str:
    """``url`` without its password, for a message."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


@dataclass(frozen=True)
class Heartbeat:
    """What a live worker says of itself."""

    instance: str  # a new one each time a worker starts: a restart under the same name is told apart
    holding: tuple[str, str] | None  # (mode, model) its GPU holds, or else the last it read
    can_run: frozenset[tuple[str, str]]  # (mode, model) pairs its machine can run

    def dumps(self) -> str:
        return json.dumps({"instance": self.instance, "holding": self.holding, "can_run": sorted(self.can_run)})

    @classmethod
    def loads(cls, raw: bytes) -> Heartbeat:
        data = json.loads(raw)
        holding = data["holding"]
        return cls(data["instance"], tuple(holding) if holding else None,
                   frozenset(tuple(pair) for pair in data["can_run"]))


@dataclass(frozen=True)
class Attempt:
    """A job given to a worker: what it sends back counts only while this is the job's attempt."""

    worker: str
    instance: str
    token: str

    def dumps(self) -> str:
        return json.dumps({"worker": self.worker, "instance": self.instance, "token": self.token})

    @classmethod
    def loads(cls, raw: bytes) -> Attempt:
        data = json.loads(raw)
        return cls(data["worker"], data["instance"], data["token"])


def pack(header: dict, payload: bytes = b"") -> bytes:
    """One item of the results list: a JSON line (which never holds a raw newline), then the
    bytes it carries (a prepared page's PNG)."""
    return json.dumps(header, ensure_ascii=False).encode() + b"\n" + payload


def unpack(item: bytes) -> tuple[dict, bytes]:
    header, _sep, payload = item.partition(b"\n")
    return json.loads(header), payload


def job_args(job_id: str, token: str, spec: Spec, documents: list[Document], data: dict[int, bytes],
             kept: dict[int, dict[int, str]]) -> tuple:
    """The RQ job's arguments as JSON can carry them (``SERIALIZER``)."""
    return (job_id, token, asdict(spec), [asdict(d) for d in documents],
            {str(n): base64.b64encode(raw).decode() for n, raw in data.items()},
            {str(n): {str(index): page for index, page in pages.items()} for n, pages in kept.items()})


def from_job_args(job_id: str, token: str, spec: dict, documents: list[dict], data: dict[str, str],
                  kept: dict[str, dict[str, str]]) -> tuple:
    """``job_args`` undone: what ``Worker.read`` takes."""
    box = spec.get("box")
    return (job_id, token, Spec(**{**spec, "box": tuple(box) if box else None}), [Document(**d) for d in documents],
            {int(n): base64.b64decode(raw) for n, raw in data.items()},
            {int(n): {int(index): page for index, page in pages.items()} for n, pages in kept.items()})
