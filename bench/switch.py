#!/usr/bin/env python3
"""How much time a model switch wastes on top of what Docker and the server need.

For each of N switches between two models:
    overhead = switch time − (old container's stop time + new container's own
               start-to-first-200, timed by a side poller every 50 ms from its StartedAt)
for the project's path (Arbiter → SingleContainerManager) and, in the same run, for the
seed's way (docker stop, docker run, sleep 3 s, poll /health every 2 s). Prints a table
and the ratio. Goal: ≤ 0.5 s of overhead per switch.

    .venv/bin/python bench/switch.py                  # light stand-in servers (2 s start)
    .venv/bin/python bench/switch.py --vllm           # the real vLLM CPU build, tiny model
    .venv/bin/python bench/switch.py --compile-cache  # a start with the kept compile cache
                                                      # against one without (bench/compile_cache.py)
Needs what scripts/install.sh --test installs (Docker engine, test images, .venv-vllm).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from managers.arbiter import Arbiter  # noqa: E402
from managers.containers import container_spec  # noqa: E402
from managers.docker_host import connect  # noqa: E402
from models.config import load_config  # noqa: E402
from tests.containers import (  # noqa: E402
    build_tiny_model, ensure_images, fake_entry, remove_test_containers, vllm_entry, write_config,
)


class FirstOK(threading.Thread):
    """Polls /health every 50 ms and notes the wall-clock time of the first 200."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.at = url, None
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    if r.status == 200:
                        self.at = time.time()
                        return
            except OSError:
                pass
            time.sleep(0.05)


def started_at(client, name: str) -> float:
    raw = client.containers.get(name).attrs["State"]["StartedAt"]
    return datetime.fromisoformat(raw[:26].rstrip("Z") + "+00:00").timestamp()


def measure(switch, client, config, key: str) -> dict:
    v = config.models[key].vllm
    poller = FirstOK(f"http://{v.host}:{v.port}")
    poller.start()
    began = time.perf_counter()
    stop_s = switch(key)
    total = time.perf_counter() - began
    poller.join(timeout=600)
    own_start = poller.at - started_at(client, v.container_name)
    return {"total": total, "stop": stop_s, "server": own_start, "overhead": total - stop_s - own_start}


def ours(config):
    arbiter = Arbiter(config)

    def switch(key):
        arbiter.switch(key)
        return arbiter.manager.last_report.stop_s
    return switch


def seed_baseline(config, client):
    """The seed's manager: stop, fixed sleep, slow health polling."""
    def switch(key):
        began = time.perf_counter()
        for c in client.containers.list(filters={"label": "io.chatvlmllm.managed=true"}):
            c.stop(timeout=int(config.switching.stop_timeout_s))
            c.remove()
        stop_s = time.perf_counter() - began
        client.containers.run(**container_spec(key, config.models[key], config, gpu_runtime=False))
        v = config.models[key].vllm
        time.sleep(3)
        while True:
            try:
                with urllib.request.urlopen(f"http://{v.host}:{v.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return stop_s
            except OSError:
                pass
            time.sleep(2)
    return switch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--delay", type=float, default=2.0, help="start time of the light servers, s")
    parser.add_argument("--vllm", action="store_true", help="use the real vLLM CPU build")
    parser.add_argument("--compile-cache", action="store_true",
                        help="first start against a second on the kept compile cache (real vLLM)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="chatvlmllm-bench-"))
    os.environ["CHATVLMLLM_DATA_DIR"] = str(work / "data")
    client = connect()
    ensure_images(client)
    if args.compile_cache:
        from bench.compile_cache import run
        return run(work, client)
    if args.vllm:
        model_dir = work / "tiny"
        model_dir.mkdir(mode=0o755)
        build_tiny_model(model_dir)
        entries = {k: vllm_entry(k, model_dir) for k in ("bench_a", "bench_b")}
    else:
        entries = {k: fake_entry(k, delay=args.delay) for k in ("bench_a", "bench_b")}
    config = load_config(write_config(work / "config.yaml", entries))
    order = ["bench_a", "bench_b"] * (args.switches // 2 + 1)

    rows = {}
    for name, make in (("seed baseline", lambda: seed_baseline(config, client)), ("ChatVLMLLM", lambda: ours(config))):
        remove_test_containers(client)
        switch = make()
        switch(order[0])  # warm: the first start has nothing to stop
        rows[name] = [measure(switch, client, config, key) for key in order[1:args.switches + 1]]
        remove_test_containers(client)

    print(f"\n{args.switches} switches between two {'vLLM (CPU, tiny Qwen2-VL)' if args.vllm else 'light'} "
          f"servers, medians in seconds\n")
    print(f"{'path':<16}{'switch':>9}{'stop':>9}{'server':>9}{'overhead':>10}{'worst':>9}")
    for name, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        worst = max(r["overhead"] for r in runs)
        print(f"{name:<16}{med['total']:>9.2f}{med['stop']:>9.2f}{med['server']:>9.2f}"
              f"{med['overhead']:>10.2f}{worst:>9.2f}")
    base = statistics.median(r["overhead"] for r in rows["seed baseline"])
    mine = statistics.median(r["overhead"] for r in rows["ChatVLMLLM"])
    print(f"\noverhead ratio (seed / ChatVLMLLM): {base / max(mine, 1e-3):.1f}×; goal ≤ 0.5 s: "
          f"{'met' if mine <= 0.5 else 'NOT met'} ({mine:.2f} s)")


if __name__ == "__main__":
    main()
