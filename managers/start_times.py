"""How long each model took to start before, to estimate the next start."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

KEEP = 10


class StartTimes:
    def __init__(self, data_dir: Path):
        self.path = data_dir / "start_times.json"

    def _load(self) -> dict[str, list[float]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, key: str, seconds: float) -> None:
        data = self._load()
        data[key] = (data.get(key, []) + [round(seconds, 2)])[-KEEP:]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)

    def estimate(self, key: str) -> float | None:
        times = self._load().get(key)
        return statistics.median(times) if times else None
