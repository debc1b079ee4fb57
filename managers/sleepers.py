"""What each model's server kept on the GPU when it last slept, and at which level.

Measured with NVML around each sleep (free after minus free before is what it gave back),
never assumed: the admission of a sleeper beside the next model rests on it. Kept in
``sleepers.json`` under the arbiter's folder, written under switch.lock (only a switch
writes it), replaced atomically so a reader never sees half of it.
"""

from __future__ import annotations

import json
from pathlib import Path

from managers.locks import replace_file


class Sleepers:
    def __init__(self, data_dir: Path):
        self.path = data_dir / "sleepers.json"

    def _load(self) -> dict[str, dict]:
        """What can be read of the file; anything else (an editor's slip, a half-written file
        from another version) is dropped, to be measured again, rather than failing a switch."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: _readable(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def kept_gb(self) -> dict[str, float]:
        return {k: v["kept_gb"] for k, v in self._load().items() if "kept_gb" in v}

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
        replace_file(self.path, json.dumps(data))


def _readable(entry) -> dict:
    if not isinstance(entry, dict):
        return {}
    kept, level = entry.get("kept_gb"), entry.get("level")
    readable = {"level": level} if level in (1, 2) and not isinstance(level, bool) else {}
    if isinstance(kept, (int, float)) and not isinstance(kept, bool) and kept >= 0:
        readable["kept_gb"] = float(kept)
    return readable
