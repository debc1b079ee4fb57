"""The arbiter: one model on the GPU, across every browser session, thread and CLI process.

Contract:
- ``switch(key)`` returns once ``key``'s vLLM server is the one model on the GPU; a request
  for the model already active joins it; requests for other models wait for the change in
  progress, and when several wait the newest wins — the ones it overtook raise
  Superseded("… by Y").
- ``claim_local(key, load)`` makes way for a local model (stops the project's containers,
  refuses while another live process holds a local model) and runs ``load`` while no other
  change can begin; ``release_local()`` unloads it after the pages being read.
- ``lease(mode, key, pages)`` holds (mode, key) on the GPU while pages are read. It is taken
  atomically with the check that (mode, key) *is* the active model and that no change away
  from it is under way; a change waits for the leases it would cut
  (``switching.pages_wait_timeout_s``), reporting "waiting for N pages in progress".
- A failed change leaves the record saying what really holds the GPU.

How it stays true (see managers/locks.py): every claim is a kernel lock — ``switch.lock``
while a change runs, ``local.lock`` while a process holds a local model, one slot lock per
lease and per waiting request — so death and pid reuse release them at once. The record of
what holds the GPU (``gpu.json``: mode, model, owner) is written in one place, ``_write``,
under ``state.lock``. One lock order on every path: switch.lock → the local loader's lock →
state.lock; slot and probe locks are only ever tried, never waited on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from managers.container_manager import OnEvent, SingleContainerManager, SwitchEvent
from managers.containers import ModelStatus
from managers.locks import FileLock, Slots, held_by_someone, replace_file
from models.config import AppConfig, lock_dir
from models.errors import Cancelled, NotAvailable, Superseded, SwitchError
from models.i18n import _, n_

WAIT_POLL_S = 0.1
CLAIM_WAIT_S = 2.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Holder:
    """What holds the GPU: a vLLM server (mode "vllm") or a process's local model."""

    mode: str
    model: str
    pid: int  # who started it (for messages; liveness comes from locks, never from a pid)
    host: str
    since: str


@dataclass
class GPUState:
    """The one record of the GPU's owner, kept in ``gpu.json``."""

    holder: Holder | None = None
    switching: dict | None = None  # {"mode", "model"} while a change runs (valid with switch.lock held)
    seq: int = 0  # numbers switch requests, so the newest one wins
    last_used: float = field(default_factory=time.time)  # a page read or a chat, for idle unload

    @classmethod
    def parse(cls, data: dict) -> GPUState:
        holder = data.get("holder")
        return cls(Holder(**holder) if holder else None, data.get("switching"), data.get("seq", 0),
                   data.get("last_used", time.time()))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Lease:
    """Pages of one document being read with one (mode, model); ``done(n)`` counts them down."""

    def __init__(self, arbiter: Arbiter, slot):
        self._arbiter, self._slot = arbiter, slot

    @property
    def pages(self) -> int:
        return self._slot.record["pages"]

    def done(self, pages: int = 1) -> None:
        with self._arbiter._state() as state:  # under state.lock, so scans see whole records
            self._slot.update(pages=max(0, self.pages - pages))
            state.last_used = time.time()  # a page read: the model is not idle


class Arbiter:
    """``release_local`` unloads the local model this arbiter claimed (the runtime gives it
    the loader's unload), so the arbiter never imports the loader; an arbiter made without
    it changes only vLLM servers. The claim is this object's: the runtime's one arbiter
    holds its process's local model, and two arbiters act on each other as two processes do."""

    def __init__(self, config: AppConfig, manager: SingleContainerManager | None = None,
                 directory: Path | None = None, release_local: Callable[[], object] | None = None):
        self.config = config
        self.dir = directory or lock_dir(config)
        self.manager = manager or SingleContainerManager(config, directory=self.dir)
        self.leases = Slots(self.dir / "leases")
        self.wants = Slots(self.dir / "wants")
        self._release_local = release_local
        self._local_claim: FileLock | None = None  # this arbiter's hold on local.lock
        self._claim_guard = threading.Lock()

    # --- the record ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _state(self) -> Iterator[GPUState]:
        """The record, read and written under its own short lock."""
        path = self.dir / "gpu.json"
        with FileLock(self.dir / "state.lock"):
            try:
                state = GPUState.parse(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                state = GPUState()
            before = asdict(state)
            yield state
            if asdict(state) != before:
                self._write(path, state)

    @staticmethod
    def _write(path: Path, state: GPUState) -> None:
        replace_file(path, json.dumps(asdict(state), indent=1))

    def state(self) -> GPUState:
        with self._state() as state:
            return state

    def _local_held(self) -> bool:
        """Whether some live process holds a local model (its lock cannot be taken)."""
        return held_by_someone(self.dir / "local.lock")

    def _live(self, holder: Holder | None) -> Holder | None:
        """The recorded holder if it still holds: a local one only while its process lives."""
        if holder and holder.mode == "local" and not self._local_held():
            return None
        return holder

    def holder(self) -> Holder | None:
        """What holds the GPU now."""
        return self._live(self.state().holder)

    def _set_holder(self, mode: str | None, key: str | None) -> None:
        with self._state() as state:
            state.holder = (Holder(mode, key, os.getpid(), socket.gethostname(), _now())
                            if mode else None)
            state.last_used = time.time()

    def _reconcile(self) -> None:
        """After a failed change: record what really holds the GPU, whatever was recorded.
        Never raises: the error that ended the change is the one to report."""
        try:
            if self._local_held():
                return  # a live local model: the record of it was not touched by a vLLM change
            running = self.manager.active()
        except Exception:  # the Docker SDK missing too: nothing here may hide the change's error
            log.debug("could not read what holds the GPU after a failed change", exc_info=True)
            return  # unknown: the record stays as it was
        with self._state() as state:
            if running is None:
                state.holder = None
            elif not (state.holder and state.holder.mode == "vllm" and state.holder.model == running):
                state.holder = Holder("vllm", running, os.getpid(), socket.gethostname(), _now())

    def touch(self) -> None:
        """A page was read or a question answered: the model is not idle."""
        with self._state() as state:
            state.last_used = time.time()

    # --- changes -------------------------------------------------------------------------

    def switch(self, key: str, on_event: OnEvent | None = None,
               cancel: threading.Event | None = None) -> ModelStatus:
        name = self.config.model(key).name
        with self._state() as state:
            state.seq += 1
            seq = state.seq
            want = self.wants.take({"seq": seq, "model": key})
        try:
            with self._change(("vllm", key), on_event, cancel, lambda: self._check_not_overtaken(seq, key, name)):
                self._refuse_foreign_local()
                self._wait_for_leases(lambda lease: (lease.get("mode"), lease.get("model")) != ("vllm", key),
                                      on_event, cancel)
                self._unload_own_local_model()
                status = self.manager.switch(key, on_event, cancel)
                self._set_holder("vllm", key)
                return status
        finally:
            want.release()

    def claim_local(self, key: str, load: Callable[[], object], on_event: OnEvent | None = None,
                    cancel: threading.Event | None = None):
        """Make way for local model ``key`` and run ``load`` while no other change can begin."""
        assert self._release_local is not None, "an arbiter that cannot unload a local model may not claim one"
        with self._change(("local", key), on_event, cancel):
            self._refuse_foreign_local()
            self._wait_for_leases(lambda lease: (lease.get("mode"), lease.get("model")) != ("local", key),
                                  on_event, cancel)
            self._unload_own_local_model()  # another local model of this process, claim and all
            try:
                self.manager.stop_all(on_event)
            except NotAvailable as exc:
                holder = self.holder()
                if holder and holder.mode == "vllm":  # it may still run: never load beside it
                    name = self.config.models[holder.model].name if holder.model in self.config.models else holder.model
                    raise NotAvailable(_("{model}'s vLLM server may still hold the GPU, and this process cannot "
                                         "reach Docker to stop it ({reason}); stop it first (cli.py stop).",
                                         model=name, reason=exc)) from None
            self._take_local_claim()
            try:
                loaded = load()
            except BaseException:
                self.drop_local_claim()
                raise
            self._set_holder("local", key)
            return loaded

    def release_local(self, on_event: OnEvent | None = None, cancel: threading.Event | None = None):
        """Unload this process's local model once the pages being read with it are done."""
        with self._change(None, on_event, cancel):
            self._wait_for_leases(lambda lease: lease.get("mode") == "local", on_event, cancel)
            return self._unload_own_local_model()

    def stop(self, on_event: OnEvent | None = None, cancel: threading.Event | None = None,
             only_if_idle_since: float | None = None) -> list[str]:
        """Stop what holds the GPU (after its pages): the project's containers, and this
        process's local model. ``only_if_idle_since``: do nothing if it was used after that."""
        with self._change(None, on_event, cancel):
            if only_if_idle_since is not None and (
                    self.state().last_used > only_if_idle_since or any(self.leases.live())):
                return []
            self._wait_for_leases(lambda lease: True, on_event, cancel)
            stopped = self.manager.stop_all(on_event)
            if self._unload_own_local_model() is not None:
                stopped.append("local model")
            with self._state() as state:
                if state.holder and (state.holder.mode == "vllm" or not self._local_held()):
                    state.holder = None
            return stopped

    @contextlib.contextmanager
    def _change(self, target: tuple[str, str] | None, on_event: OnEvent | None,
                cancel: threading.Event | None, still_wanted: Callable[[], None] = lambda: None):
        """Hold switch.lock for one change of what holds the GPU, marked as under way so that
        ``lease`` refuses readers of what is about to stop. Leaves the record true on failure."""
        lock = FileLock(self.dir / "switch.lock")
        started = time.monotonic()
        announced = False
        while True:
            still_wanted()
            if cancel is not None and cancel.is_set():
                raise Cancelled(_("The change was cancelled before it began."))
            if lock.acquire(blocking=False):
                break
            if on_event and not announced:
                on_event(SwitchEvent("waiting", _("waiting for another switch to finish"),
                                     time.monotonic() - started))
                announced = True
            time.sleep(WAIT_POLL_S)
        try:
            still_wanted()
            with self._state() as state:
                state.switching = {"mode": target[0], "model": target[1]} if target else {"mode": None, "model": None}
            try:
                yield
            except BaseException:
                self._reconcile()
                raise
            finally:
                with self._state() as state:
                    state.switching = None
        finally:
            lock.release()

    def _check_not_overtaken(self, seq: int, key: str, name: str) -> None:
        with self._state():
            wants = [w for w in self.wants.live() if "seq" in w]
        newest = max(wants, key=lambda w: w["seq"], default=None)
        if newest and newest["seq"] > seq and newest["model"] != key:
            other = self.config.models.get(newest["model"])
            raise Superseded(_("The switch to {model} was superseded by {other}.",
                               model=name, other=other.name if other else newest["model"]))

    # --- the local claim ------------------------------------------------------------------

    def _take_local_claim(self) -> None:
        with self._claim_guard:
            if self._local_claim is None:
                claim = FileLock(self.dir / "local.lock")
                # Under switch.lock only probes (held for microseconds) or a real holder
                # that slipped past _refuse_foreign_local can hold it: wait out the probes.
                deadline = time.monotonic() + CLAIM_WAIT_S
                while not claim.acquire(blocking=False):
                    if time.monotonic() > deadline:
                        raise NotAvailable(_("Another process holds a local model; unload it there and try again."))
                    time.sleep(0.01)
                self._local_claim = claim

    def forget_local(self) -> None:
        """The local model this arbiter claimed was unloaded: drop the claim and the record of it."""
        if not self.drop_local_claim():
            return  # nothing of this arbiter's: the record may name another runtime of this process
        with self._state() as state:
            if state.holder and state.holder.mode == "local" and state.holder.pid == os.getpid():
                state.holder = None

    def drop_local_claim(self) -> bool:
        """This arbiter no longer holds a local model (the loader calls it after unloading);
        whether it held one."""
        with self._claim_guard:
            if self._local_claim is None:
                return False
            self._local_claim.release()
            self._local_claim = None
            return True

    def _refuse_foreign_local(self) -> None:
        if self._local_claim is not None or not self._local_held():
            return  # nobody, or this very process (which unloads its own model)
        holder = self.state().holder
        if holder and holder.mode == "local":
            model = self.config.models.get(holder.model)
            what = _("{model} in local mode", model=model.name if model else holder.model)
        else:
            what = _("a local model")
        raise NotAvailable(_("Process {pid} holds the GPU with {what}; unload it there (the Unload button, "
                             "or end that process) and try again.", pid=str(holder.pid) if holder else "?", what=what))

    def _unload_own_local_model(self):
        if self._local_claim is not None and self._release_local is not None:
            return self._release_local()
        return None

    # --- leases ----------------------------------------------------------------------------

    def _wait_for_leases(self, blocks: Callable[[dict], bool], on_event: OnEvent | None,
                         cancel: threading.Event | None) -> None:
        timeout = self.config.switching.pages_wait_timeout_s
        started = time.monotonic()
        while True:
            with self._state():
                pending = [lease for lease in self.leases.live() if blocks(lease) and lease.get("pages", 1) > 0]
            if not pending:
                return
            pages = sum(lease.get("pages", 1) for lease in pending)
            if time.monotonic() - started > timeout:
                raise SwitchError(n_("{n} page is still being read after {seconds:g} s "
                                     "(switching.pages_wait_timeout_s); switch again when it finishes.",
                                     "{n} pages are still being read after {seconds:g} s "
                                     "(switching.pages_wait_timeout_s); switch again when they finish.",
                                     pages, seconds=timeout))
            if cancel is not None and cancel.is_set():
                raise Cancelled(_("The change was cancelled while pages were being read."))
            if on_event:
                on_event(SwitchEvent("waiting", n_("waiting for {n} page in progress",
                                                   "waiting for {n} pages in progress", pages),
                                     time.monotonic() - started))
            time.sleep(self.config.switching.poll_interval_s)

    @contextlib.contextmanager
    def lease(self, mode: str, key: str, pages: int) -> Iterator[Lease]:
        """Hold (mode, key) on the GPU while ``pages`` pages are read with it."""
        name = self.config.model(key).name
        with self._state() as state:
            switching = state.switching
            if switching and not held_by_someone(self.dir / "switch.lock"):
                # the process changing the model died midway: what holds the GPU is unknown
                raise SwitchError(_("The last model switch ended without finishing (its process stopped); "
                                    "start {model} again to read.", model=name))
            if switching and (switching["mode"], switching["model"]) != (mode, key):
                target = self.config.models.get(switching["model"] or "")
                if target:
                    raise SwitchError(_("A switch to {model} is under way; read the document when it is done.",
                                        model=target.name))
                raise SwitchError(_("A stop of the running model is under way; read the document when it is done."))
            holder = self._live(state.holder)
            if holder is None or (holder.mode, holder.model) != (mode, key):
                raise SwitchError(_("{model} is not the active model (it was stopped, or another model took the "
                                    "GPU); start it again to read.", model=name))
            slot = self.leases.take({"mode": mode, "model": key, "pages": pages, "pid": os.getpid()})
            state.last_used = time.time()
        try:
            yield Lease(self, slot)
        finally:
            slot.release()
            self.touch()
