#!/usr/bin/env python3
"""Word and Excel exports of one table, 50×10 and 500×10 cells: seconds each, and the ratio
500/50 rows, which is ~10 when an export is linear in cells and ~100 when it is quadratic.

    .venv/bin/python bench/exports.py [--baseline REV] [--repeats 3]

The baseline is the Word table of revision REV (default 8347d42, before the page structure):
its ``_table`` filled cells through python-docx's ``table.cell(r, c)``, which walks every cell
of the table on each call. It is loaded from git into a temporary module and given the same
table, once (its 500×10 table takes minutes; ``--baseline ""`` leaves it out).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from docx import Document  # noqa: E402

from models import exports  # noqa: E402
from models.elements import Table  # noqa: E402
from models.result import OCRResult, PageResult  # noqa: E402

SIZES = (50, 500)
COLUMNS = 10


def table(rows: int) -> Table:
    """A price list as a model reads it: item numbers, names, quantities, Russian prices."""
    return Table(cells=[["№", "Наименование", *(f"Колонка {c}" for c in range(3, COLUMNS + 1))]] + [
        [f"{r}.10", f"Товар {r}", *(f"{r * c} 250,{c:02d}" for c in range(3, COLUMNS + 1))]
        for r in range(1, rows)])


def result(rows: int) -> OCRResult:
    return OCRResult(model="m", engine="e", task="t",
                     pages=[PageResult(index=0, width=1000, height=1000, elements=[table(rows)])])


def best(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def baseline(rev: str):
    """The old Word table function, or None when that revision cannot be loaded."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:models/exports/word.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except subprocess.CalledProcessError:
        return None
    path = Path(tempfile.mkdtemp()) / "old_word.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_word", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # an import that no longer exists: say so and go on
        print(f"baseline {rev} not loaded: {exc}", file=sys.stderr)
        return None
    return lambda t: module._table(Document(), t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="8347d42")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    old = baseline(args.baseline) if args.baseline else None
    rows = [("export", *(f"{n}×{COLUMNS} s" for n in SIZES), f"{SIZES[1]}/{SIZES[0]}")]
    runs = {
        "docx": lambda n: exports.export(result(n), "docx", "t.png", page_image=None),
        "xlsx": lambda n: exports.export(result(n), "xlsx", "t.png", page_image=None),
    }
    if old is not None:
        runs[f"docx table, {args.baseline}"] = lambda n: old(table(n))
    for name, run in runs.items():
        repeats = 1 if name.startswith("docx table") else args.repeats  # the old one takes minutes
        seconds = [best(repeats, lambda: run(n)) for n in SIZES]
        rows.append((name, *(f"{s:.3f}" for s in seconds), f"{seconds[1] / seconds[0]:.1f}×"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


if __name__ == "__main__":
    main()
