"""How long each switch and load took before, stage by stage, to say how long the next will take.

A record is one switch or load of one model, of one kind, with the seconds of each stage:

- kinds: ``cold`` (a vLLM container created and started), ``wake`` (a sleeping vLLM server
  woken), ``load`` (a local model read from disk and built), ``kept`` (a local model copied
  back from host memory), ``warm_up`` (a local model's compiled warm-up);
- stages, in the order they run: ``stop`` (what held the GPU stopped or put to sleep),
  ``memory`` (waiting for the GPU memory to come back), ``pull``, ``start`` (container
  created and started, a server woken, or weights loaded), ``ready`` (until the API answers),
  ``warm_up``.

Kept in ``start_times.json`` under the arbiter's folder, the last ``KEEP`` per model and kind,
written under a lock so that processes recording at once all keep theirs. A file written
before stages were kept (``{"model": [seconds, ...]}``) reads as cold starts.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from managers.locks import FileLock, replace_file

KEEP = 10
KINDS = ("cold", "wake", "load", "kept", "warm_up")
STAGES = ("stop", "memory", "pull", "start", "ready", "warm_up")


@dataclass(frozen=True)
class Timing:
    """One switch or load: its stages in seconds, and when it ended (epoch seconds)."""

    stages: dict[str, float] = field(default_factory=dict)
    at: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.stages.values())

    @classmethod
    def parse(cls, raw) -> Timing:
        if isinstance(raw, (int, float)):  # the old format: a cold start's seconds
            return cls({"start": float(raw)})
        return cls({k: float(v) for k, v in raw.get("stages", {}).items()}, float(raw.get("at", 0.0)))


def _readable(kinds: dict) -> dict[str, list]:
    """One model's records, without what no Timing can be read from (a file edited by hand):
    a status or a switch that succeeded must not fail for it, and the next record replaces it."""
    def parses(raw) -> bool:
        try:
            Timing.parse(raw)
        except (AttributeError, TypeError, ValueError):
            return False
        return True

    return {kind: [raw for raw in records if parses(raw)] for kind, records in kinds.items()
            if isinstance(records, list)}


class StartTimes:
    def __init__(self, data_dir: Path):
        self.path = data_dir / "start_times.json"
        self._lock = data_dir / "start_times.lock"

    def _load(self) -> dict[str, dict[str, list]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {key: _readable({"cold": value} if isinstance(value, list) else value)
                for key, value in data.items() if isinstance(value, (list, dict))}

    def record(self, key: str, kind: str, stages: dict[str, float]) -> Timing:
        assert kind in KINDS, kind
        timing = Timing({k: round(v, 3) for k, v in stages.items()}, time.time())
        with FileLock(self._lock):
            data = self._load()
            kept = data.setdefault(key, {}).setdefault(kind, [])
            kept.append({"stages": timing.stages, "at": round(timing.at, 3)})
            data[key][kind] = kept[-KEEP:]
            replace_file(self.path, json.dumps(data))
        return timing

    def timings(self, key: str, kind: str) -> list[Timing]:
        """Oldest first."""
        return [Timing.parse(raw) for raw in self._load().get(key, {}).get(kind, [])]

    def estimate(self, key: str, kind: str = "cold") -> float | None:
        """The median total of the kept ones of this kind, or None before the first."""
        totals = [t.total for t in self.timings(key, kind)]
        return statistics.median(totals) if totals else None

    def last(self, key: str, kind: str) -> Timing | None:
        found = self.timings(key, kind)
        return found[-1] if found else None
