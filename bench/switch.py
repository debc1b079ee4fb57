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
    .venv/bin/python bench/switch.py --sleep 1        # stand-ins: cold switch vs waking a sleeper
Needs what scripts/install.sh --test installs (Docker engine, test images, .venv-vllm).

Sleep mode (README "Sleep mode"), in one run through the same Arbiter and manager: switches
between two models with sleep off (every switch a cold start), then with sleep on (every
switch after the first two wakes the other model); a table of stage medians and the ratio.

--sleep 1|2 runs it on the stand-in server and the fake NVML (tests/fixtures): it checks the
sequence and the bookkeeping, not vLLM's speed — its "wake" costs what the stand-in pretends.

--real measures it on a machine with an NVIDIA GPU, Docker with the NVIDIA Container Toolkit,
the vLLM image and the models' weights in the Hugging Face cache volume; it cannot run here:

    .venv/bin/python bench/switch.py --real --config config.yaml --models qwen3_vl_2b qwen2_vl_2b

It switches between the two models --switches times each way: sleep off, then level 1, then
level 2 (its own copies of the config; config.yaml is not changed), and prints per kind the
median switch, stop-or-sleep, start-or-wake and ready seconds, what each sleeper kept on the
GPU (NVML, sleepers.json) and the ratios cold / level 1 and cold / level 2. Models with
expose: true are switched cold whatever the setting. Put those figures in the README.
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


def with_sleep(config, level: int):
    """The same models, every one sleeping at ``level`` on a switch away (0: stopped)."""
    from models.config import parse_config

    data = config.model_dump(exclude_none=True)
    data["switching"]["sleep"] = level
    for model in data["models"].values():
        if model.get("vllm"):
            model["vllm"].pop("sleep", None)
    return parse_config(data)


def sleep_rows(config, keys: list[str], switches: int, levels: tuple[int, ...]) -> dict[str, list]:
    """Per kind (cold, level N), the reports of ``switches`` measured switches back and forth;
    the first two of each kind start both models and are not counted."""
    rows = {}
    for level in (0, *levels):
        arbiter = Arbiter(with_sleep(config, level))
        arbiter.stop()  # containers created under another setting lack (or carry) the sleep flags
        reports = []
        for i in range(switches + 2):
            arbiter.switch(keys[i % 2])
            if i >= 2:
                reports.append(arbiter.manager.last_report)
        assert level == 0 or all(r.woke for r in reports), "a switch did not wake its model: see its events"
        rows["cold" if level == 0 else f"level {level}"] = reports
        arbiter.stop()
    return rows


def print_sleep_rows(rows: dict[str, list], title: str, kept: dict[str, float]) -> None:
    print(f"\n{title}, medians in seconds\n")
    print(f"{'kind':<10}{'switch':>9}{'stop/sleep':>12}{'start/wake':>12}{'ready':>9}")
    totals = {}
    for kind, reports in rows.items():
        med = {k: statistics.median(getattr(r, k) for r in reports) for k in ("total_s", "stop_s", "start_s", "ready_s")}
        totals[kind] = med["total_s"]
        print(f"{kind:<10}{med['total_s']:>9.2f}{med['stop_s']:>12.2f}{med['start_s']:>12.2f}{med['ready_s']:>9.2f}")
    for kind in totals:
        if kind != "cold":
            print(f"cold / {kind}: {totals['cold'] / max(totals[kind], 1e-3):.1f}×")
    if kept:
        print("kept on the GPU while asleep (NVML): " + ", ".join(f"{k} {gb:.2f} GB" for k, gb in kept.items()))


def sleep_bench(args, work: Path, client) -> None:
    """Stand-ins on the fake NVML's card: the product's own import of pynvml reads it."""
    from tests.containers import FAKE_NVML, on_fake_gpu

    nvml = work / "nvml"
    nvml.mkdir(mode=0o777)
    nvml.chmod(0o777)
    os.environ["FAKE_NVML_DIR"] = str(nvml)
    sys.path.insert(0, str(FAKE_NVML))
    entries = {k: on_fake_gpu(fake_entry(k, delay=args.delay), nvml) for k in ("bench_a", "bench_b")}
    config = load_config(write_config(work / "config.yaml", entries))
    rows = sleep_rows(config, ["bench_a", "bench_b"], args.switches, (args.sleep,))
    from managers.sleepers import Sleepers
    print_sleep_rows(rows, f"{args.switches} switches between two light stand-in servers ({args.delay:g} s start; "
                     f"the fake NVML)", Sleepers(work / "data").kept_gb())
    remove_test_containers(client)


def real_bench(args) -> None:
    from managers.sleepers import Sleepers
    from models.config import lock_dir

    config = load_config(args.config)
    rows = sleep_rows(config, args.models, args.switches, (1, 2))
    print_sleep_rows(rows, f"{args.switches} switches between {' and '.join(args.models)} on this GPU",
                     Sleepers(lock_dir(config)).kept_gb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=6)
    parser.add_argument("--delay", type=float, default=2.0, help="start time of the light servers, s")
    parser.add_argument("--vllm", action="store_true", help="use the real vLLM CPU build")
    parser.add_argument("--compile-cache", action="store_true",
                        help="first start against a second on the kept compile cache (real vLLM)")
    parser.add_argument("--sleep", type=int, choices=(1, 2), help="stand-ins: cold switches against wakes at this level")
    parser.add_argument("--real", action="store_true", help="a real GPU: cold against level 1 and level 2 wakes")
    parser.add_argument("--config", help="with --real: the config holding the two models (default config.yaml)")
    parser.add_argument("--models", nargs=2, default=["qwen3_vl_2b", "qwen2_vl_2b"], help="with --real")
    args = parser.parse_args()
    if args.real:
        real_bench(args)
        return

    work = Path(tempfile.mkdtemp(prefix="chatvlmllm-bench-"))
    os.environ["CHATVLMLLM_DATA_DIR"] = str(work / "data")
    client = connect()
    ensure_images(client)
    if args.compile_cache:
        from bench.compile_cache import run
        return run(work, client)
    if args.sleep:
        sleep_bench(args, work, client)
        return
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
