"""What the kept compile cache (``vllm_cache_volume``) saves on a model's start.

Three starts of one tiny Qwen2-VL, each from the app's own create request (container_spec,
so the volume is mounted as for users) to the server's first /health 200, each container
removed before the next:
    1. first start, on an empty cache volume (vLLM compiles and saves its graphs);
    2. the same model again, on that now filled volume;
    3. control: the same model on a fresh empty volume, right after, so a warm page cache
       (Python, torch, the weights) is not credited to the volume.
vLLM compiles only without ``--enforce-eager``, and its CPU build compiles with Inductor,
which needs a C++ compiler: the starts use bench/compiler/Dockerfile, the tests' runtime
image plus g++ and Python's headers. Run through ``bench/switch.py --compile-cache``.
"""

from __future__ import annotations

import os
import re
import sys
import time
import urllib.request
from pathlib import Path

from managers.containers import CONTAINER_PORT, LABEL_MANAGED, VLLM_CACHE_IN_CONTAINER, container_spec
from models.config import load_config
from tests.containers import TEST_LABEL, build_tiny_model, vllm_entry, volume_files, write_config

ROOT = Path(__file__).resolve().parent.parent
BENCH_IMAGE = "chatvlmllm-bench/compiler:1"
KEY = "bench_cc"
# What vLLM says about compiling: the CPU runner's warm-up (where Inductor compiles), the AOT
# artifact saved or loaded (or its load failing), the GPU runner's compile and graph lines.
COMPILE_LINE = re.compile(r"Warming up|AOT compil|load failure|Directly load|torch\.compile takes|"
                          r"Compiling a graph|Capturing CUDA graphs|Graph capturing finished|init engine")
STAMP = re.compile(r"(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)")


def compiling_entry(model_dir: Path) -> dict:
    """The tests' real vLLM entry, on the image with a compiler and without --enforce-eager."""
    entry = vllm_entry(KEY, model_dir)
    entry["vllm"]["image"] = BENCH_IMAGE
    entry["vllm"]["args"] = [a for a in entry["vllm"]["args"] if a != "--enforce-eager"]
    return entry


def _seconds(line: str) -> int:
    month, day, h, m, s = map(int, STAMP.search(line).groups())
    return (((month * 31 + day) * 24 + h) * 60 + m) * 60 + s


def read_log(log: str) -> dict:
    """The compile lines, the warm-up's span (whole seconds: vLLM's stamps have no finer
    ones), init engine's seconds, and what became of the compile cache."""
    lines = [line for line in log.splitlines() if COMPILE_LINE.search(line)]
    began = next((line for line in lines if "Warming up model" in line), None)
    done = next((line for line in lines if "Warming up done" in line), None)
    engine = re.search(r"init engine \(.*\) took ([\d.]+) s", log)
    if "load failure" in log:
        verdict = "AOT load failed: compiled again"
    elif "Directly load" in log:
        verdict = "loaded"
    elif "saved AOT compiled" in log or "torch.compile takes" in log:
        verdict = "compiled, saved"
    else:
        verdict = "no compile"
    return {"lines": lines, "warm_up": _seconds(done) - _seconds(began) if began and done else None,
            "engine": float(engine.group(1)) if engine else None, "cache": verdict}


def ready_after(client, spec: dict, timeout: float = 600) -> float:
    """Seconds from creating the container to its first /health 200."""
    url = f"http://127.0.0.1:{spec['ports'][f'{CONTAINER_PORT}/tcp'][1]}/health"
    began = time.perf_counter()
    container = client.containers.run(**spec)
    while time.perf_counter() - began < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - began
        except OSError:
            pass
        container.reload()
        if container.status != "running":
            raise RuntimeError(f"{spec['name']} exited while starting: {container.logs(tail=5).decode()}")
        time.sleep(0.1)
    raise TimeoutError(f"{spec['name']} not ready after {timeout} s")


def start(client, config, volume: str, name: str) -> dict:
    """One start with the cache on ``volume``, its container removed afterwards."""
    config = config.model_copy(update={"vllm_cache_volume": volume})
    spec = container_spec(KEY, config.models[KEY], config, gpu_runtime=False)
    # The app's create request as it is, less its managed label: on a shared Docker engine
    # another process's switch or local load stops every managed container, mid-measurement.
    del spec["labels"][LABEL_MANAGED]
    try:
        ready = ready_after(client, spec)
        print(f"{name}: ready in {ready:.1f} s", file=sys.stderr, flush=True)
        log = client.containers.get(spec["name"]).logs().decode(errors="replace")
    finally:
        remove_container(client, spec["name"])
    # the host's 1-minute load when ready: other work on the 2 cores slows a start too
    return {"start": name, "volume": volume, "ready": ready, "load": os.getloadavg()[0], **read_log(log)}


def remove_container(client, name: str) -> None:
    import docker.errors

    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass


def print_files(files: list[tuple[int, str]]) -> None:
    total = sum(size for size, _ in files)
    print(f"\n{VLLM_CACHE_IN_CONTAINER} after the first start: {len(files)} files, {total / 1e6:.2f} MB")
    groups: dict[str, list[int]] = {}
    for size, path in files:
        parts = path.split("/")
        # torch_compile_cache/torch_aot_compile/<hash>/<part>: the hash says nothing
        head = "/".join(p if len(p) < 40 else "<hash>" for p in parts[:min(len(parts) - 1, 4)]) or "."
        groups.setdefault(head, []).append(size)
    for head, sizes in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {sum(sizes) / 1e6:8.2f} MB  {len(sizes):4d} files  {head}/")


def run(work: Path, client) -> None:
    client.images.build(path=str(ROOT / "bench" / "compiler"), tag=BENCH_IMAGE, rm=True)
    model_dir = work / "tiny"
    model_dir.mkdir(mode=0o755)
    build_tiny_model(model_dir)
    entry = compiling_entry(model_dir)
    config = load_config(write_config(work / "config.yaml", {KEY: entry}))
    stamp = int(time.time())
    filled, control = f"chatvlmllm-bench-vllm-cache-{stamp}", f"chatvlmllm-bench-vllm-cache-{stamp}-control"
    for volume in (filled, control):
        client.volumes.create(volume, labels={TEST_LABEL: "bench"})
    try:
        rows = [start(client, config, filled, "1 first (empty volume)")]
        files = [(len(data), path) for path, data in volume_files(client, filled, "bench").items()]
        rows.append(start(client, config, filled, "2 again (same volume)"))
        rows.append(start(client, config, control, "3 control (fresh empty volume)"))
    finally:
        remove_container(client, entry["vllm"]["container_name"])
        for volume in (filled, control):
            client.volumes.get(volume).remove(force=True)

    print_files(files)
    print("\nWhat vLLM logged about compiling, start by start:")
    for row in rows:
        print(f"  [{row['start']}]")
        for line in row["lines"]:
            print(f"    {line[:220]}")
    print("\nOne tiny Qwen2-VL, vLLM CPU 0.32 with Inductor (no --enforce-eager), seconds\n")
    print(f"{'start':<32}{'ready':>8}{'init engine':>13}{'warm-up':>9}{'load':>6}  compile cache")
    for row in rows:
        warm = "?" if row["warm_up"] is None else f"{row['warm_up']}"
        engine = "?" if row["engine"] is None else f"{row['engine']:.2f}"
        print(f"{row['start']:<32}{row['ready']:>8.1f}{engine:>13}{warm:>9}{row['load']:>6.1f}  {row['cache']}")
    first, again, ctl = (row["ready"] for row in rows)
    print(f"\nready, first / again: {first / again:.2f}×; control / again: {ctl / again:.2f}×")
    if all(row["engine"] for row in rows):
        # vLLM compiles inside init engine; the rest of a start is the API server and the
        # model's loading, which the cache does not touch and a busy host slows just as much
        saved = rows[2]["engine"] - rows[1]["engine"]
        print(f"init engine (where vLLM compiles), control / again: "
              f"{rows[2]['engine'] / rows[1]['engine']:.2f}× ({saved:.1f} s saved by the kept cache)")
