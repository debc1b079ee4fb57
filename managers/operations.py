"""Long operations — switches, local loads, stops, unloads — run by a worker the process owns.

A Streamlit script run ends whenever the user touches a widget; an operation started from
it must not end with it. Each operation runs in its own thread of this process, so every
browser session (and every rerun) sees its live progress, clicking around or reloading
never stops it, and only its own Cancel does. The arbiter still serialises them: two
operations never change what holds the GPU at once.

Contract:
- ``Operations.start(kind, key, mode, work)`` runs ``work(on_event, cancel)`` in the
  background and returns its Operation; asking again for the same (kind, key, mode) while
  one runs joins it.
- An Operation's ``state`` is running, done, failed or cancelled; ``events`` holds its
  progress, ``error`` its one sentence, ``log_tail`` a container's last lines.
- ``wait`` blocks until it ends (passing new events on) and raises its error.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from managers.container_manager import OnEvent, SwitchEvent
from models.errors import Cancelled, ChatVLMError, SwitchError
from models.i18n import _

KINDS = {"switch": _("switch"), "load": _("load"), "stop": _("stop"), "unload": _("unload")}

KEEP_FINISHED = 20
Work = Callable[[OnEvent, threading.Event], object]


@dataclass
class Operation:
    id: int
    kind: str  # switch, load, stop, unload
    key: str | None
    mode: str | None
    state: str = "running"  # running, done, failed, cancelled
    events: list[SwitchEvent] = field(default_factory=list)
    error: ChatVLMError | None = None
    result: object = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def last_event(self) -> SwitchEvent | None:
        return self.events[-1] if self.events else None

    @property
    def log_tail(self) -> str:
        return self.error.log_tail if isinstance(self.error, SwitchError) else ""

    def wait(self, on_event: OnEvent | None = None, cancel: threading.Event | None = None):
        """Block until the operation ends, passing each new event on; raise its error.
        A set ``cancel`` stops the waiting at once (Cancelled), not the operation."""
        seen = 0
        while not self._done.wait(0.1):
            seen = self._pass_on(on_event, seen)
            if cancel is not None and cancel.is_set():
                raise Cancelled(_("Cancelled while the model was being made ready."))
        self._pass_on(on_event, seen)
        if self.error is not None:
            raise self.error
        return self.result

    def _pass_on(self, on_event: OnEvent | None, seen: int) -> int:
        events = self.events[seen:]
        if on_event:
            for event in events:
                on_event(event)
        return seen + len(events)


class Operations:
    """A runtime's long operations (managers/runtime.py: one per process): the running ones
    and the last few finished."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ops: list[Operation] = []
        self._ids = itertools.count(1)
        self.joined: set[str] = set()  # vLLM models this process started or joined (idle unload)

    def start(self, kind: str, key: str | None, mode: str | None, work: Work) -> Operation:
        return self.begin(kind, key, mode, work)[0]

    def begin(self, kind: str, key: str | None, mode: str | None, work: Work) -> tuple[Operation, bool]:
        """The operation, and whether this call started it (False: it joined one running)."""
        with self._lock:
            for op in self._ops:
                if op.running and (op.kind, op.key, op.mode) == (kind, key, mode):
                    return op, False
            op = Operation(next(self._ids), kind, key, mode)
            finished = [o for o in self._ops if not o.running][-KEEP_FINISHED:]
            self._ops = [o for o in self._ops if o.running or o in finished] + [op]
        threading.Thread(target=self._run, args=(op, work), name=f"op-{kind}-{key}", daemon=True).start()
        return op, True

    def _run(self, op: Operation, work: Work) -> None:
        try:
            op.result = work(op.events.append, op.cancel)
            op.state = "done"
            if op.kind == "switch" and op.key:
                self.joined.add(op.key)
        except Cancelled as exc:
            op.error, op.state = exc, "cancelled"
        except ChatVLMError as exc:
            op.error, op.state = exc, "failed"
        except Exception as exc:  # a bug must still end the operation with a sentence
            op.error, op.state = ChatVLMError(_("The {operation} failed unexpectedly: {reason}",
                                                operation=KINDS.get(op.kind, op.kind), reason=exc)), "failed"
        finally:
            if op.state == "running":  # ended by something no handler above could catch
                op.error, op.state = ChatVLMError(_("The {operation} was interrupted.",
                                                    operation=KINDS.get(op.kind, op.kind))), "failed"
            op.finished = time.time()
            op._done.set()

    def running(self) -> list[Operation]:
        with self._lock:
            return [op for op in self._ops if op.running]

    def get(self, op_id: int) -> Operation | None:
        with self._lock:
            return next((op for op in self._ops if op.id == op_id), None)
