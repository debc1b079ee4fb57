"""Idle unload (Ollama's keep_alive, llama-swap's ttl): after ``switching.idle_unload_s``
with no page read and no chat, the app process unloads its local model or stops the vLLM
container it started or joined, so an idle app does not keep the card busy. The next Run
loads again. The CLI does not watch: ``cli.py stop`` is its way."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from models.errors import ChatVLMError

if TYPE_CHECKING:
    from managers.runtime import Runtime

log = logging.getLogger(__name__)


def idle_deadline(runtime: Runtime) -> float | None:
    """When this process will unload what it holds (epoch seconds), or None if never."""
    idle = runtime.config.switching.idle_unload_s
    if not idle:
        return None
    arbiter = runtime.arbiter
    holder = arbiter.holder()
    ours = holder is not None and (
        (holder.mode == "local" and runtime.loader.current() is not None) or
        (holder.mode == "vllm" and holder.model in runtime.operations.joined))
    # Nothing awake, yet servers this process started may run: a switch that put one to sleep
    # and then failed to start the next leaves it asleep, holding its share of the card.
    left_asleep = holder is None and bool(runtime.operations.joined)
    return arbiter.state().last_used + idle if ours or left_asleep else None


class IdleWatcher(threading.Thread):
    """One per app process (its runtime's); checks a few times per idle period."""

    def __init__(self, runtime: Runtime):
        super().__init__(name="idle-unload", daemon=True)
        self.runtime = runtime
        self.every = max(0.2, min(30.0, runtime.config.switching.idle_unload_s / 4))
        self.stopped = threading.Event()

    def run(self) -> None:
        operations, config = self.runtime.operations, self.runtime.config
        while not self.stopped.wait(self.every):
            deadline = idle_deadline(self.runtime)
            if deadline is None or time.time() < deadline or operations.running():
                continue
            arbiter = self.runtime.arbiter
            if any(arbiter.leases.live()):
                continue  # pages are being read: not idle, however long ago it began
            since = time.time() - config.switching.idle_unload_s
            op = operations.start("stop", None, "idle", lambda on_event, cancel:
                                  arbiter.stop(on_event, cancel, only_if_idle_since=since))
            try:
                stopped = op.wait()
            except ChatVLMError:
                log.exception("idle unload failed")  # the next check tries again
                continue
            if stopped or arbiter.holder() is None:  # nothing of ours is left to watch
                operations.joined.clear()
