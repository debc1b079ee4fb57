#!/usr/bin/env python3
"""Pages per minute through one vLLM server: one request at a time versus the project's
concurrent path, on the same 16-page document in the same run.

    .venv/bin/python bench/throughput.py [--pages 16] [--concurrency 4 8] [--max-tokens 64]

Starts the real vLLM CPU build with a tiny random-weight Qwen2-VL in a container through
the manager (needs what scripts/install.sh --test installs). Goal: ≥ 3× at concurrency 8.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from managers.arbiter import Arbiter  # noqa: E402
from managers.docker_host import connect  # noqa: E402
from managers.runs import make_engine  # noqa: E402
from managers.runtime import Runtime  # noqa: E402
from models.config import load_config  # noqa: E402
from models.document import open_document  # noqa: E402
from tests.containers import build_tiny_model, ensure_images, remove_test_containers, vllm_entry, write_config  # noqa: E402
from tests.helpers import ENGLISH, RUSSIAN, pdf_of_images, render_lines  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--max-tokens", type=int, default=256, help="tokens written per page at most")
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chatvlmllm-bench-"))
    os.environ["CHATVLMLLM_DATA_DIR"] = str(work / "data")
    client = connect()
    ensure_images(client)
    remove_test_containers(client)
    model_dir = work / "tiny"
    model_dir.mkdir(mode=0o755)
    build_tiny_model(model_dir)
    entry = vllm_entry("bench", model_dir)
    entry["requests"] = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    config = load_config(write_config(work / "config.yaml", {"bench": entry}))
    print("starting the vLLM server…", file=sys.stderr)
    Arbiter(config).switch("bench")
    try:
        pages = [render_lines((RUSSIAN if i % 2 else ENGLISH)[: 1 + i % 3]) for i in range(args.pages)]
        doc = open_document(pdf_of_images(pages), "bench.pdf", config.limits)
        rows = []
        for concurrency in [1, 1, *args.concurrency]:  # the first sequential run warms the server
            tuned = config.model_copy(update={"requests": config.requests.model_copy(
                update={"concurrency": concurrency})})
            engine = make_engine(Runtime(tuned), "bench", "vllm")
            started = time.perf_counter()
            result = engine.ocr(doc.pages())
            seconds = time.perf_counter() - started
            assert not result.failed, [p.error for p in result.failed]
            rows.append((concurrency, seconds))
        rows = rows[1:]
    finally:
        remove_test_containers(client)

    base = rows[0][1]
    print(f"\n{args.pages} pages (A4 at 200 dpi, up to {args.max_tokens} tokens each, temperature "
          f"{args.temperature:g}) through one vLLM server "
          "(CPU build, tiny Qwen2-VL)\n")
    print(f"{'path':<26}{'seconds':>9}{'pages/min':>11}{'speed-up':>10}")
    for concurrency, seconds in rows:
        name = "one request at a time" if concurrency == 1 else f"concurrent ({concurrency} in flight)"
        print(f"{name:<26}{seconds:>9.1f}{args.pages / seconds * 60:>11.1f}{base / seconds:>9.1f}×")


if __name__ == "__main__":
    main()
