"""What the next switch to a model will be, and how long it should take, said before it starts
(the sidebar, ``cli.py models``): a person waits a second for a sleeping server to wake and a
minute for a cold start, and should know which before pressing Switch.

The kind follows from where the model is now — vLLM: ready (nothing to do), asleep (wakes),
anything else (cold start); local: loaded (nothing to do), kept in host RAM (copied back),
anything else (read from disk) — and the time is the start-time store's median for that kind
(``managers.start_times``). With no record yet it says so: a number is never made up. Pure:
the caller reads the container states and the loader and passes them in.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from managers.containers import State
from managers.start_times import StartTimes, Timing
from models.config import AppConfig, Mode
from models.i18n import Message, N_, _


# Each kind of switch as it is said with a time kept, and before the first.
TIMED = {
    "cold": (N_("{time}: cold start"), N_("cold start; no time kept yet")),
    "wake": (N_("{time}: wakes from sleep"), N_("wakes from sleep; no time kept yet")),
    "load": (N_("{time}: loads from disk"), N_("loads from disk; no time kept yet")),
    "kept": (N_("{time}: copied back from RAM"), N_("copied back from RAM; no time kept yet")),
}
# Where nothing has to start.
NOTHING = {"ready": N_("already running"), "loaded": N_("already loaded"),
           "remote": N_("remote endpoint: nothing to start"), "cpu": N_("nothing to load")}


@dataclass(frozen=True)
class Expected:
    kind: str  # a key of TIMED or of NOTHING
    seconds: float | None = None

    @property
    def message(self) -> Message:
        if self.kind in NOTHING:
            return Message(NOTHING[self.kind])
        timed, untimed = TIMED[self.kind]
        return Message(untimed) if self.seconds is None else Message(timed, {"time": duration(self.seconds)})


def duration(seconds: float) -> Message:
    """Seconds as a person estimates them: "<1 s", "~45 s", "~2 min" (a median of a few
    switches is no more exact than that)."""
    if round(seconds) < 1:
        return _("<1 s")
    if seconds < 90:
        return _("~{seconds} s", seconds=round(seconds))
    return _("~{minutes} min", minutes=round(seconds / 60))


def expect(config: AppConfig, times: StartTimes, key: str, mode: Mode, *, state: State | None = None,
           loaded: str | None = None, kept: Collection[str] = (), device: str = "cpu") -> Expected:
    """The next switch to ``key`` in ``mode``. ``state``: its container's now (None where
    Docker cannot be read: then a cold start is assumed); ``loaded``: the local model held
    now; ``kept``: local models kept in host RAM; ``device``: where a local model would run."""
    if mode == "cpu":
        return Expected("cpu")
    if mode == "vllm":
        if config.model(key).vllm.remote:
            return Expected("remote")
        if state is State.READY:
            return Expected("ready")
        kind = "wake" if state is State.ASLEEP else "cold"
        return Expected(kind, times.estimate(key, kind))
    if loaded == key:
        return Expected("loaded")
    kind = "kept" if key in kept else "load"
    seconds = times.estimate(key, kind)
    last = times.last(key, kind)
    # The compiled warm-up is kept apart (the loader's compile:… key) unless a record timed it.
    warm_up = times.estimate(f"compile:{key}:{device}", "warm_up")
    if seconds is not None and warm_up is not None and "warm_up" not in last.stages:
        seconds += warm_up
    return Expected(kind, seconds)


def asleep_note(name: str, last_wake: Timing | None) -> Message:
    """One sleeping model, and how long it took to wake the last time."""
    if last_wake is None:
        return _("asleep: {name} · not woken yet", name=name)
    return _("asleep: {name} · woke in {seconds:.1f} s last time", name=name, seconds=last_wake.total)
