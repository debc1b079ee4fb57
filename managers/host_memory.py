"""How much host memory the kernel says is available: what keeping weights in RAM (a local
model kept, a vLLM server asleep at level 1) must leave room within."""

from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def available_bytes(meminfo: Path = MEMINFO) -> int | None:
    """MemAvailable (the kernel's estimate of memory available without swapping), or None
    where the kernel does not say."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
