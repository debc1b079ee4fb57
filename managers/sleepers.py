"""What each model's server kept on the GPU when it last slept, and at which level.

Measured with NVML around each sleep (free after minus free before is what it gave back),
never assumed: the admission of a sleeper beside the next model rests on it. Kept in
``sleepers.json`` under the arbiter's folder, written under switch.lock (only a switch
writes it), replaced atomically so a reader never sees half of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from managers.locks import FILE_MODE


class Sleepers:
    def __init__(self, data_dir: Path):
        self.path = data_dir / "sleepers.json"

    def _load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def kept_gb(self) -> dict[str, float]:
        return {k: float(v["kept_gb"]) for k, v in self._load().items() if "kept_gb" in v}

    def level(self, key: str) -> int | None:
        """The level ``key`` was last put to sleep at (None: not by this app)."""
        return self._load().get(key, {}).get("level")

    def record(self, key: str, level: int, kept_gb: float | None) -> None:
        data = self._load()
        entry = {"level": level}
        if kept_gb is not None:
            entry["kept_gb"] = round(max(0.0, kept_gb), 3)
        elif "kept_gb" in data.get(key, {}):
            entry["kept_gb"] = data[key]["kept_gb"]
        data[key] = entry
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data))
        tmp.replace(self.path)


def available_ram_gb(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """The kernel's estimate of memory available without swapping (MemAvailable)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return None
