#!/usr/bin/env python3
"""What the HTTP API costs over the command line and over the engine, in the same run.

1. Pages per minute: the same documents read by ``cli.py ocr`` (real processes) and by a
   running ``api.py`` (a real uvicorn process): every document submitted to POST /v1/jobs at
   once, each job followed on its event stream to its end, its txt downloaded. The CLI is
   timed as a script would use it — one call over all documents (its start, Python imports
   and config included, since each call pays them) and one call per document; the API
   server is started once before the timings (its start time is printed apart), as a
   service is; ``cli.py ocr --help`` shows what a call pays before its first page. Each
   round runs the one-call CLI and the API next to each other, in alternating order; the
   ratio is the median of the rounds' ratios. Goal: API ≥ 0.95× the one-call CLI.
2. Latency a small page adds: POST /v1/ocr of a one-line image, against opening the same
   bytes and reading them with the document runner (managers/runs.py, the engine the API's
   worker uses) in this process; alternated, median and p90 over N, and of the difference
   between each API read and the direct read next to it. Goal: ≤ 50 ms.

    .venv/bin/python bench/api.py                          # Tesseract, the embedded default
    .venv/bin/python bench/api.py --stub [--stub-delay 0.2]  # dots_ocr via the stand-in endpoint
    .venv/bin/python bench/api.py --model dots_ocr --endpoint http://127.0.0.1:8001/v1  # a live server

Both paths use the same config file, data dir settings and engine settings (page
preparation included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from managers import runs  # noqa: E402
from managers.runtime import Runtime  # noqa: E402
from models.config import load_config  # noqa: E402
from models.document import open_document  # noqa: E402
from tests.api_server import APIServer  # noqa: E402
from tests.fixtures.openai_stub import OpenAIStub  # noqa: E402
from tests.helpers import ENGLISH, RUSSIAN, encode, pdf_of_images, render_lines  # noqa: E402

TIMEOUT_S = 600


def documents(count: int, pages: int, fmt: str = "JPEG") -> list[tuple[str, bytes]]:
    """Invoices in Russian and English, ``pages`` A4 pages each, as scanned PDFs (JPEG pages,
    as a scanner makes them: the API moves every byte of them, the CLI reads them from disk)."""
    made = []
    for d in range(count):
        images = [render_lines((RUSSIAN if (d + p) % 2 else ENGLISH)[: 2 + (d + p) % 3]) for p in range(pages)]
        made.append((f"doc{d + 1}.pdf", pdf_of_images(images, fmt)))
    return made


def small_page() -> bytes:
    return encode(render_lines(ENGLISH[:1], size=(1000, 160), top=50), "PNG")


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


class Paths:
    """The three ways of reading the documents, each checked to have read every page."""

    def __init__(self, api: APIServer, files: list[Path], model: str, mode: str | None, out: Path):
        self.api, self.files, self.model, self.mode, self.out = api, files, model, mode, out
        self.env = {**api.env}
        self.http = requests.Session()
        self.form = {"model": model, **({"mode": mode} if mode else {})}

    def _cli(self, files: list[Path], out: Path) -> None:
        command = [sys.executable, str(ROOT / "cli.py"), "--config", str(self.api.config_path), "ocr", *map(str, files),
                   "--model", self.model, *(["--mode", self.mode] if self.mode else []), "--format", "txt",
                   "--out", str(out)]
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=TIMEOUT_S)
        if done.returncode != 0:
            raise SystemExit(f"cli.py ocr failed ({done.returncode}):\n{done.stderr[-3000:]}")

    def cli_start(self) -> None:
        """What every call pays before its first page: the process, imports, argument parsing."""
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "ocr", "--help"], cwd=ROOT, env=self.env,
                       capture_output=True, check=True, timeout=TIMEOUT_S)

    def cli_once(self) -> None:
        self._cli(self.files, self.out / "cli-once")

    def cli_each(self) -> None:
        for file in self.files:
            self._cli([file], self.out / "cli-each")

    def api_jobs(self) -> None:
        url = self.api.url + "/v1/jobs"
        ids = []
        for file in self.files:
            answer = self.http.post(url, files={"files": (file.name, file.read_bytes())}, data=self.form,
                                    timeout=TIMEOUT_S)
            if answer.status_code != 202:
                raise SystemExit(f"POST /v1/jobs answered {answer.status_code}: {answer.text}")
            ids.append(answer.json()["id"])
        for job_id in ids:
            with self.http.get(f"{url}/{job_id}/events", stream=True, timeout=TIMEOUT_S) as stream:
                for _line in stream.iter_lines():  # to the end of the stream: the job has ended
                    pass
            result = self.http.get(f"{url}/{job_id}/result", params={"format": "txt"}, timeout=TIMEOUT_S)
            if result.headers.get("x-job-state") != "done" or not result.text.strip():
                raise SystemExit(f"job {job_id} ended {result.headers.get('x-job-state')}: {result.text[:500]}")


CLI_ONCE, API_JOBS, CLI_START = ("cli.py ocr, one call over all documents", "API: all submitted at once",
                                 "cli.py ocr --help (no page)")


def throughput(paths: Paths, rounds: int, each: bool) -> list[tuple[str, str, list[float]]]:
    """Seconds of each path in each round. The one-call CLI and the API run next to each
    other in every round (first and second, then second and first), so each round's ratio
    compares them under the same load."""
    runs_ = [(CLI_ONCE, "process start + imports + reading + writing txt", paths.cli_once),
             (API_JOBS, "upload + queue + reading + events + txt download", paths.api_jobs),
             (CLI_START, "process start + imports (a lower bound of a call's fixed cost)", paths.cli_start)]
    if each:
        runs_.append(("cli.py ocr, one call per document", "a process per document, one after another",
                      paths.cli_each))
    times: dict[str, list[float]] = {name: [] for name, _what, _run in runs_}
    for name, _what, run in runs_:  # warm-up, not counted: page cache, Tesseract's data, the API's first job
        print(f"warm-up: {name}", file=sys.stderr)
        run()
    for r in range(rounds):
        order = runs_ if r % 2 == 0 else runs_[::-1]
        for name, _what, run in order:
            times[name].append(timed(run))
            print(f"round {r + 1}: {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    return [(name, what, times[name]) for name, what, _run in runs_]


def latency(api: APIServer, config_path: Path, model: str, mode: str | None, repeats: int) -> tuple[list, list]:
    data = small_page()
    config = load_config(config_path)
    runtime = Runtime(config)
    choice = runs.Choice(model, mode)
    form = {**({"mode": mode} if mode else {}), "model": model, "format": "txt"}
    http = requests.Session()

    def direct() -> None:
        document = open_document(data, "small.png", config.limits)
        result = runs.read_document(runtime, choice, document.pages()).result
        assert not result.failed and result.pages[0].text.strip(), result

    def through_api() -> None:
        answer = http.post(api.url + "/v1/ocr", files={"files": ("small.png", data)}, data=form, timeout=TIMEOUT_S)
        if answer.status_code != 200:
            raise SystemExit(f"POST /v1/ocr answered {answer.status_code}: {answer.text}")

    try:
        direct(), through_api()  # warm-up
        engine, api_times = [], []
        for r in range(repeats):
            pair = ((engine, direct), (api_times, through_api))
            for into, run in (pair if r % 2 == 0 else pair[::-1]):
                into.append(timed(run))
    finally:
        runtime.close()
    return engine, api_times


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--pages", type=int, default=2, help="pages per document")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each path, alternated")
    parser.add_argument("--latency", type=int, default=30, help="small pages read each way")
    parser.add_argument("--model", default="tesseract")
    parser.add_argument("--mode", help="default: the model's first")
    parser.add_argument("--endpoint", help="an OpenAI-compatible server for --model (e.g. a live vLLM)")
    parser.add_argument("--stub", action="store_true", help="dots_ocr through the stand-in endpoint")
    parser.add_argument("--stub-delay", type=float, default=0.0, help="seconds the stand-in takes per page")
    parser.add_argument("--no-each", action="store_true", help="leave out the one-call-per-document CLI path")
    parser.add_argument("--raw-pages", action="store_true",
                        help="PDF pages as raw pixels (~12 MB an A4 page) instead of JPEG: big uploads")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chatvlmllm-bench-api-"))
    stub = None
    if args.stub:
        stub = OpenAIStub(delay=args.stub_delay)
        args.model, args.endpoint = "dots_ocr", stub.url + "/v1"
    changes: dict = {"api": {"per_key_jobs": max(8, args.documents), "ocr_max_pages": 1}}
    if args.endpoint:
        changes["models"] = {args.model: {"vllm": {"endpoint": args.endpoint}}}
    folder = work / "docs"
    folder.mkdir()
    files = []
    for name, data in documents(args.documents, args.pages, "PNG" if args.raw_pages else "JPEG"):
        (folder / name).write_bytes(data)
        files.append(folder / name)
    total = args.documents * args.pages

    api = APIServer(work, data_dir=work / "data", **changes)
    os.environ["CHATVLMLLM_DATA_DIR"] = str(work / "data-direct")  # this process's runtime (latency)
    started = time.perf_counter()
    api.start()
    start_s = time.perf_counter() - started
    try:
        rows = throughput(Paths(api, files, args.model, args.mode, work / "out"), args.rounds, not args.no_each)
        engine, through = latency(api, api.config_path, args.model, args.mode, args.latency)
    except BaseException:
        print(api.log()[-3000:], file=sys.stderr)
        raise
    finally:
        api.stop()
        if stub:
            stub.close()

    what = f"{args.model}{f' ({args.mode})' if args.mode else ''}" + (" via the stand-in endpoint" if stub else "")
    size = sum(file.stat().st_size for file in files) / 2**20
    print(f"\n{args.documents} documents × {args.pages} A4 page(s) = {total} pages ({size:.1f} MB of PDF), {what}; "
          f"median of {args.rounds} alternated rounds after a warm-up; API server start (not counted): "
          f"{start_s:.1f} s\n")
    seconds = {name: values for name, _counted, values in rows}
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    out = [("path", "counted", "seconds", "pages/min", "vs one-call CLI")]
    for name, counted, _values in rows:
        reads = name != CLI_START
        out.append((name, counted, f"{medians[name]:.2f}", f"{total / medians[name] * 60:.1f}" if reads else "—",
                    f"{medians[CLI_ONCE] / medians[name]:.2f}×" if reads else "—"))
    table(out)
    rounds = list(zip(seconds[CLI_ONCE], seconds[API_JOBS], seconds[CLI_START]))
    ratio = statistics.median(cli / api for cli, api, _start in rounds)
    less_start = statistics.median((cli - start) / api for cli, api, start in rounds)
    print(f"\nAPI / one-call CLI pages/min, median of the rounds' ratios: {ratio:.2f}× (goal ≥ 0.95×: "
          f"{'met' if ratio >= 0.95 else 'NOT met'}; rounds: {', '.join(f'{c / a:.2f}' for c, a, _s in rounds)}); "
          f"against the CLI call less its start: {less_start:.2f}×")

    print(f"\nA one-line page ({what}), {args.latency} reads each way, alternated, ms\n")
    out = [("path", "median", "p90")]
    for name, values in (("open + runs.read_document in-process", engine), ("POST /v1/ocr, txt answer", through)):
        out.append((name, f"{statistics.median(values) * 1000:.1f}", f"{p90(values) * 1000:.1f}"))
    added = [api - direct for direct, api in zip(engine, through)]  # each read with the one next to it
    out.append(("added by the API, pair by pair", f"{statistics.median(added) * 1000:+.1f}",
                f"{p90(added) * 1000:+.1f}"))
    table(out)
    added = statistics.median(added)
    print(f"\nadded latency (median): {added * 1000:.1f} ms (goal ≤ 50 ms: {'met' if added <= 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
