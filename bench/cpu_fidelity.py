#!/usr/bin/env python3
"""Tesseract on real scans and phone photos: character error rate per kind of damage, and
pages per minute on the CPU, in one run.

    .venv/bin/python bench/cpu_fidelity.py [--pages 12] [--workers N] [--repeats 3]

Builds its own degraded set from a rendered Russian page with known text (tests/degrade.py;
the kinds and their parameters are printed) and reads each with the `tesseract` CLI alone,
Debian's `ocrmypdf --rotate-pages --deskew --clean` (text via --sidecar; `apt-get install
ocrmypdf unpaper`, else its column says so) and ChatVLMLLM (page preparation, then the
Tesseract engine). Then pages/min on a scanned 12-page PDF: the engine as it was (Tesseract
with its default OpenMP threads, one page at a time), one worker with OMP_THREAD_LIMIT=1,
and N workers (N = the cores this process may use); and what preparation costs a page.
Goals: CER ≤ 0.02 on every kind and 0 on the clean page; pages/min ≥ 2.5× the engine as
it was; a clean page ≤ 1.5× the time with preparation off.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from managers.engines.tesseract import TesseractEngine, parse_tsv  # noqa: E402
from managers.prepare import prepare_page  # noqa: E402
from models.config import Preprocess, load_config, usable_cores  # noqa: E402
from models.document import Page, open_document  # noqa: E402
from tests.degrade import KINDS, TEXT, degraded, tender_page  # noqa: E402
from tests.helpers import cer, pdf_of_images  # noqa: E402

LANGUAGES = "rus+eng"


def png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", dpi=(200, 200))
    return buf.getvalue()


def tesseract_alone(image, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["tesseract", "stdin", "stdout", "-l", LANGUAGES, "--psm", "3"],
                          input=png(image), capture_output=True, check=True, env=env)
    return done.stdout.decode()


def ocrmypdf(image, work: Path) -> str | None:
    if shutil.which("ocrmypdf") is None or shutil.which("unpaper") is None:
        return None
    src, sidecar = work / "in.png", work / "out.txt"
    src.write_bytes(png(image))
    subprocess.run(["ocrmypdf", "--rotate-pages", "--deskew", "--clean", "-l", LANGUAGES,
                    "--image-dpi", "200", "--sidecar", str(sidecar), "-q", str(src), str(work / "out.pdf")],
                   check=True, capture_output=True)
    return sidecar.read_text(encoding="utf-8")


def chatvlmllm(engine: TesseractEngine, image, settings: Preprocess) -> str:
    page = prepare_page(Page(0, image), settings)
    return engine.read_page(page, engine.model.tasks["text"]).text


def fidelity(engine: TesseractEngine, settings: Preprocess) -> list[tuple[str, float, float | None, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="chatvlmllm-bench-") as tmp:
        for kind in KINDS:
            image = degraded(kind)
            alone = cer(TEXT, tesseract_alone(image))
            sidecar = ocrmypdf(image, Path(tmp))
            ours = cer(TEXT, chatvlmllm(engine, image, settings))
            rows.append((kind, alone, None if sidecar is None else cer(TEXT, sidecar), ours))
            print(f"  {kind}: done", file=sys.stderr)
    return rows


def as_it_was(doc) -> float:
    """The engine before this change: default OpenMP threading, one page at a time."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    started = time.perf_counter()
    for ref in doc.pages():
        parse_tsv(subprocess.run(["tesseract", "stdin", "stdout", "-l", LANGUAGES, "--psm", "3", "tsv"],
                                 input=png(ref.load().image), capture_output=True, check=True,
                                 env=env).stdout.decode())
    return time.perf_counter() - started


def engine_run(engine: TesseractEngine, doc, settings: Preprocess | None) -> float:
    prepare = (lambda page: prepare_page(page, settings)) if settings else None
    started = time.perf_counter()
    result = engine.ocr(doc.pages(), prepare=prepare)
    assert not result.failed, [p.error for p in result.failed]
    return time.perf_counter() - started


def cpu_seconds() -> float:
    """CPU time of this process and the Tesseract processes it waited for: what a page
    costs whatever else the machine is doing."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(step, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``step``."""
    wall, cpu = [], []
    for _ in range(repeats):
        started, used = time.perf_counter(), cpu_seconds()
        step()
        wall.append(time.perf_counter() - started)
        cpu.append(cpu_seconds() - used)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--repeats", type=int, default=3, help="runs per per-page timing (median)")
    args = parser.parse_args()

    config = load_config()
    model = config.model("tesseract")
    settings = model.preprocess
    print("Degraded set, from one rendered Russian page (DejaVu Sans 32 px, A4 at 200 dpi):\n")
    for kind, what in KINDS.items():
        print(f"- `{kind}`: {what}")
    print(f"\nChatVLMLLM preparation: {settings.model_dump()}\n", flush=True)

    one = TesseractEngine("tesseract", model, 1)
    rows = fidelity(one, settings)
    print("| page | `tesseract` CLI alone | ocrmypdf `--rotate-pages --deskew --clean` | ChatVLMLLM |")
    print("|---|---|---|---|")
    for kind, alone, other, ours in rows:
        other_cell = "not installed" if other is None else f"{other:.3f}"
        print(f"| {kind} | {alone:.3f} | {other_cell} | {ours:.3f} |")

    doc = open_document(pdf_of_images([tender_page()] * args.pages), "bench.pdf", config.limits)
    many = TesseractEngine("tesseract", model, args.workers)
    runs = [
        ("engine as it was: default OpenMP threads, one page at a time", as_it_was(doc)),
        ("one worker, OMP_THREAD_LIMIT=1, preparation off", engine_run(one, doc, None)),
        (f"{args.workers} workers, OMP_THREAD_LIMIT=1, preparation off", engine_run(many, doc, None)),
        (f"{args.workers} workers, OMP_THREAD_LIMIT=1, preparation on (shipped)", engine_run(many, doc, settings)),
    ]
    base = runs[0][1]
    print(f"\nPages/min on a scanned {args.pages}-page PDF (clean pages, {usable_cores()} usable cores):\n")
    print("| run | seconds | pages/min | vs as it was |")
    print("|---|---|---|---|")
    for name, seconds in runs:
        print(f"| {name} | {seconds:.1f} | {args.pages * 60 / seconds:.1f} | {base / seconds:.2f}× |")

    clean = tender_page()
    task = model.tasks["text"]
    off = timed(lambda: one.read_page(Page(0, clean), task), args.repeats)
    on = timed(lambda: one.read_page(prepare_page(Page(0, clean), settings), task), args.repeats)
    vlm = timed(lambda: prepare_page(Page(0, clean), Preprocess()), args.repeats)
    print(f"\nPer clean page, one at a time (median of {args.repeats}):\n")
    print("| what | wall seconds | CPU seconds |")
    print("|---|---|---|")
    print(f"| read, preparation off | {off[0]:.2f} | {off[1]:.2f} |")
    print(f"| read, preparation on (every step) | {on[0]:.2f} ({on[0] / off[0]:.2f}× off) "
          f"| {on[1]:.2f} ({on[1] / off[1]:.2f}× off) |")
    print(f"| orientation + deskew alone (the VLM default) | {vlm[0]:.2f} | {vlm[1]:.2f} |")
    print(f"\nLoad average while it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
