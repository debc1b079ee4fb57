"""The arbiter: one model on the GPU, across every browser session and CLI process.

Contract:
- ``switch(key)`` returns once ``key`` is active. A request for the model already active
  or starting joins it; a request for another model waits for the switch in progress;
  when several wait, the newest wins and the ones it overtook raise Superseded("… by Y").
  Switches run one at a time under one file lock, so nobody ever starts a second model.
- A switch never cuts a document in the middle: readers hold a ``lease`` for the pages
  they are reading, and a switch to another model waits for them (up to
  ``switching.pages_wait_timeout_s``), reporting "waiting for N pages in progress".
- The lock, the state file (owner process, mode, model) and the leases live under the
  data directory. A process that dies releases its lock (flock) and its leases (its pid
  is gone), so nothing stays stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from managers.container_manager import OnEvent, SingleContainerManager, SwitchEvent
from managers.containers import ModelStatus
from models.config import AppConfig, data_dir
from models.errors import NotAvailable, Superseded, SwitchError

WAIT_POLL_S = 0.1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """Pages of one document being read with one model; ``done(n)`` counts them down."""

    def __init__(self, path: Path, model: str, pages: int):
        self.path, self.model, self.pages = path, model, pages
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "model": self.model, "pages": self.pages}))
        tmp.replace(self.path)

    def done(self, pages: int = 1) -> None:
        self.pages = max(0, self.pages - pages)
        self._write()


class StateStore:
    """The lock files, the state file and the leases under the data directory."""

    def __init__(self, directory: Path | None = None):
        self.dir = directory or data_dir()
        self.leases_dir = self.dir / "leases"
        self.leases_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self, name: str, blocking: bool = True) -> Iterator[bool]:
        with open(self.dir / name, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict]:
        """The shared state, read and written under its own short lock."""
        path = self.dir / "arbiter.json"
        with self._locked("state.lock"):
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                state = {}
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state, indent=1))
                tmp.replace(path)

    def state(self) -> dict:
        with self._state() as state:
            return dict(state)

    def local_holder(self) -> dict | None:
        """The live process other than this one that holds the GPU with a local model."""
        with self._state() as state:
            active = state.get("active") or {}
        if active.get("mode") == "local" and active.get("pid") != os.getpid() and _alive(active["pid"]):
            return active
        return None

    def _live_leases(self) -> list[dict]:
        leases = []
        for path in self.leases_dir.glob("*.json"):
            try:
                lease = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written or removed right now
            if _alive(lease["pid"]):
                leases.append(lease)
            else:
                path.unlink(missing_ok=True)
        return leases



def release_local_claim(directory: Path | None = None) -> None:
    """This process no longer holds the GPU with a local model."""
    with StateStore(directory)._state() as state:
        active = state.get("active") or {}
        if active.get("mode") == "local" and active.get("pid") == os.getpid():
            state.pop("active")


class Arbiter(StateStore):
    def __init__(self, config: AppConfig, manager: SingleContainerManager | None = None,
                 directory: Path | None = None):
        super().__init__(directory)
        self.config = config
        self.manager = manager or SingleContainerManager(config)

    def _refuse_foreign_local(self) -> None:
        holder = self.local_holder()
        if holder:
            model = self.config.models.get(holder["model"])
            raise NotAvailable(
                f"Process {holder['pid']} holds the GPU with {model.name if model else holder['model']} "
                "in local mode; unload it there (the Unload button, or end that process) and try again.")

    def claim_local(self, key: str, on_event: OnEvent | None = None) -> None:
        """Make way for a local model: stop this project's vLLM containers (after their pages),
        refusing while another live process holds a local model."""
        with self._locked("switch.lock"), self._under_way(key):
            self._refuse_foreign_local()
            self._wait_for_leases(lambda lease: lease["model"] != key, on_event)
            try:
                self.manager.stop_all(on_event)
            except NotAvailable:
                pass  # no Docker engine answers, so none of its containers can hold the GPU
            self._set_active("local", key)

    # --- requests ---------------------------------------------------------------------------

    def switch(self, key: str, on_event: OnEvent | None = None) -> ModelStatus:
        name = self.config.model(key).name
        with self._state() as state:
            seq = state["seq"] = state.get("seq", 0) + 1
            state["wanted"] = {"seq": seq, "model": key, "pid": os.getpid()}
        started = time.monotonic()
        announced = False
        while True:
            self._check_not_overtaken(seq, key, name)
            with self._locked("switch.lock", blocking=False) as got:
                if got:
                    self._check_not_overtaken(seq, key, name)
                    with self._under_way(key):
                        return self._switch_locked(key, on_event)
            if on_event and not announced:
                on_event(SwitchEvent("waiting", "waiting for another switch to finish",
                                     time.monotonic() - started))
                announced = True
            time.sleep(WAIT_POLL_S)

    def _check_not_overtaken(self, seq: int, key: str, name: str) -> None:
        with self._state() as state:
            wanted = state["wanted"]
        if wanted["seq"] != seq and wanted["model"] != key:
            newer = self.config.models.get(wanted["model"])
            raise Superseded(f"The switch to {name} was superseded by {newer.name if newer else wanted['model']}.")

    @contextlib.contextmanager
    def _under_way(self, model: str | None) -> Iterator[None]:
        """Mark a change of the active model (to ``model``; None: a stop) while it runs, so
        that ``lease`` refuses readers of a model about to stop."""
        with self._state() as state:
            state["switching"] = {"model": model, "pid": os.getpid()}
        try:
            yield
        finally:
            with self._state() as state:
                state.pop("switching", None)

    def _set_active(self, mode: str, key: str) -> None:
        with self._state() as state:
            state["active"] = {"mode": mode, "model": key, "pid": os.getpid(),
                               "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def _switch_locked(self, key: str, on_event: OnEvent | None) -> ModelStatus:
        try:
            self._refuse_foreign_local()
            self._wait_for_leases(lambda lease: lease["model"] != key, on_event)
            self._unload_own_local_model()
            status = self.manager.switch(key, on_event)
            self._set_active("vllm", key)
            return status
        except BaseException:
            with self._state() as state:
                state.pop("active", None)  # whatever ran before was stopped, or is unknown
            raise

    @staticmethod
    def _unload_own_local_model() -> None:
        from managers.model_loader import ModelLoader  # local mode is optional; import on use

        if ModelLoader.current() is not None:
            ModelLoader.unload_all_models()

    def stop(self, on_event: OnEvent | None = None) -> list[str]:
        """Stop the active model (waiting for its pages); nothing to stop is not an error."""
        with self._locked("switch.lock"), self._under_way(None):
            self._wait_for_leases(lambda lease: True, on_event)
            stopped = self.manager.stop_all(on_event)
            with self._state() as state:
                state.pop("active", None)
            return stopped

    def _wait_for_leases(self, blocks, on_event: OnEvent | None) -> None:
        timeout = self.config.switching.pages_wait_timeout_s
        started = time.monotonic()
        while True:
            pending = [lease for lease in self._live_leases() if blocks(lease) and lease["pages"] > 0]
            if not pending:
                return
            pages = sum(lease["pages"] for lease in pending)
            if time.monotonic() - started > timeout:
                raise SwitchError(f"{pages} pages are still being read after {timeout:g} s "
                                  "(switching.pages_wait_timeout_s); switch again when they finish.")
            if on_event:
                on_event(SwitchEvent("waiting", f"waiting for {pages} pages in progress",
                                     time.monotonic() - started))
            time.sleep(self.config.switching.poll_interval_s)

    @contextlib.contextmanager
    def lease(self, key: str, pages: int) -> Iterator[Lease]:
        """Hold ``key`` on the GPU while ``pages`` pages are read with it. Refused while a
        switch to another model is under way, so a reader never starts on a model that is
        about to stop."""
        path = self.leases_dir / f"{os.getpid()}-{uuid.uuid4().hex}.json"
        with self._state() as state:
            switching = state.get("switching")
            if switching and switching["model"] != key and _alive(switching["pid"]):
                target = switching["model"] or "stop"
                raise SwitchError(f"A switch to {target} is under way; read the document when it is done.")
            lease = Lease(path, key, pages)
        try:
            yield lease
        finally:
            path.unlink(missing_ok=True)
