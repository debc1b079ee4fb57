#!/usr/bin/env python3
"""Local mode on a real GPU, under the 12 GB card's budget, for random-weight models of the
real Qwen2-VL-2B and Qwen3-VL-2B architectures (built here: nothing is downloaded). Page
preparation is off: the model alone is measured. Each part finishes within 10 minutes:

  python3 bench/local_gpu.py leaks [--cycles 5]
      load → one A4 page → unload, per model: ModelLoader's load next to a bare
      ``from_pretrained(...).to("cuda")``, peak memory, bytes left after each unload; then a
      model pushed over a 3 GiB cap fails to load cleanly.
  python3 bench/local_gpu.py speed qwen2_vl|qwen3_vl
      today's path (one page per ``generate``, dynamic cache) against the new one (pages in
      batches, compiled decoding over a static cache) in the same run, 256 new tokens forced
      per page: a single page and an 8-page document — pages/min, tokens/s, time to the
      first words (one page, streamed) or the first page (document), peak memory, bytes left
      after unload; the compile warm-up of a first load (empty Inductor cache) and of a second
      load in a fresh process (warm cache); graphs compiled after the warm-up by pages of
      other shapes and a short batch (goal 0).

  python3 bench/local_gpu.py switch [qwen2_vl] [qwen3_vl]
      switching back to a model, A → B → A with two models of one architecture, the Inductor
      cache warm for both: today's way (B unloaded, A read from disk and built, then its
      warm-up) against A kept in pinned host memory (``local.keep_in_ram``: B moved out, A
      copied back, then its warm-up), in the same run; each stage's seconds, the ratio, the
      host memory pinned, the bytes left on the GPU after each unload, and whether A reads
      a page to the same text after its round trip.

Goals: ≥ 8× pages/min at 8 pages, ≥ 3.5× tokens/s for one page, peak ≤ 10 GB, 0 B left
after unload, second-load warm-up ≤ 25 % of the first; switching back to a kept model ≥ 3×
faster than today's, 0 B left after unload. Run it with the `device` tool; the
page font comes from models/fonts, so no system fonts are needed.
``--smoke`` runs a part on the CPU with tiny models, to try the script without a GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("CHATVLMLLM_TEST_FONT", str(ROOT / "models" / "fonts" / "DejaVuSans.ttf"))

import torch  # noqa: E402
import transformers as tf  # noqa: E402

from managers.engines import local  # noqa: E402
from managers.runtime import Runtime  # noqa: E402
from managers.start_times import StartTimes  # noqa: E402
from models.config import lock_dir, parse_config  # noqa: E402
from models.document import Page  # noqa: E402
from models.errors import NotAvailable  # noqa: E402
from tests.fixtures.tiny_vlm import CHAT_TEMPLATE, SPECIAL, build, build_tokenizer  # noqa: E402
from tests.helpers import ENGLISH, RUSSIAN, render_lines  # noqa: E402

CARD = 12 * 2**30  # the reference RTX 5070 Ti
NEW_TOKENS = 256
FAMILIES = ("qwen2_vl", "qwen3_vl")


def real_architecture(family: str, out: Path) -> Path:
    """Random weights in the published shapes of the 2B checkpoints (bf16 on disk)."""
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    common = dict(vocab_size=151936, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                  pad_token_id=ids["<|endoftext|>"])
    if family == "qwen2_vl":
        config = tf.Qwen2VLConfig(
            text_config=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                             num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                             rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
                             rope_theta=1_000_000.0, **common),
            vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4,
                               patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
            tie_word_embeddings=True, **tokens)
        model_class, processor_class = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
        image_processor, video = tf.Qwen2VLImageProcessor(), tf.Qwen2VLVideoProcessor()
    else:
        config = tf.Qwen3VLConfig(
            text_config=dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                             num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                             max_position_embeddings=262144,
                             rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                              "mrope_section": [24, 20, 20], "mrope_interleaved": True},
                             **common),
            vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                               patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                               out_hidden_size=2048, num_position_embeddings=2304,
                               deepstack_visual_indexes=[5, 11, 17]),
            tie_word_embeddings=True, **tokens)
        model_class, processor_class = tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLProcessor
        image_processor = tf.Qwen2VLImageProcessor(patch_size=16, merge_size=2)
        video = tf.Qwen3VLVideoProcessor()
    with torch.device("cuda"):
        model = model_class(config).to(torch.bfloat16)
    model.save_pretrained(out)
    processor_class(image_processor=image_processor, video_processor=video, tokenizer=tokenizer,
                    chat_template=CHAT_TEMPLATE).save_pretrained(out)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return out


def weights(family: str, out: Path, smoke: bool) -> Path:
    if (out / "config.json").exists():
        return out
    started = time.perf_counter()
    path = build(out, family) if smoke else real_architecture(family, out)
    print(f"built {family} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def config_for(paths: dict[str, Path], smoke: bool, local_mode: dict | None = None, **local_settings):
    """Models keyed as in ``paths``, each key starting with its family."""
    def entry(key, path):
        family = next(f for f in FAMILIES if key.startswith(f))
        return {"name": f"{key} (random)", "vram_gb": 5.0, "max_pixels": 401_408 if smoke else 1_003_520,
                "min_pixels": 3136, "resize_factor": 28 if family == "qwen2_vl" else 32,
                "requests": {"max_tokens": 8 if smoke else NEW_TOKENS},
                "tasks": {"text": {"label": "Text", "prompt": "Read all the text in the image."}},
                "local": {"model_id": f"bench/{key}", "path": str(path), "dtype": "bfloat16",
                          **local_settings}}

    return parse_config({
        "default_model": "tesseract", "gpu": {"vram_total_gb": 12, "vram_usable_gb": 10, "vram_recommended_max_gb": 8},
        "limits": {"max_upload_mb": 200, "max_pages": 50, "max_image_pixels": 120_000_000, "pdf_dpi": 200},
        "local": local_mode or {},
        "models": {**{key: entry(key, path) for key, path in paths.items()},
                   "tesseract": {"name": "Tesseract", "vram_gb": 0, "tasks": {"text": {"label": "Text"}}, "cpu": {}}}})


def cuda() -> bool:
    return torch.cuda.is_available()


def allocated() -> int:
    return torch.cuda.memory_allocated() if cuda() else 0


def peak() -> int:
    return torch.cuda.max_memory_allocated() if cuda() else 0


def reset_peak() -> None:
    if cuda():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def cap(fraction_of: int = CARD) -> None:
    if cuda():
        torch.cuda.set_per_process_memory_fraction(fraction_of / torch.cuda.get_device_properties(0).total_memory)


def begin(args) -> None:
    """Each compiling part's start: the card's cap, and with --smoke no compiler (the shapes
    and the plumbing are what is tried)."""
    cap()
    if args.smoke:
        local.COMPILE_BACKEND = "eager"


def document(count: int) -> list[Page]:
    lines = [RUSSIAN + ENGLISH, ENGLISH + RUSSIAN, RUSSIAN[::-1] + ENGLISH[:1], ENGLISH[::-1] + RUSSIAN[1:]]
    return [Page(n, render_lines(lines[n % len(lines)][: 3 + n % 4])) for n in range(count)]


# --- part: leaks -----------------------------------------------------------------------------------

def bare_load(path: Path) -> float:
    started = time.perf_counter()
    processor = tf.AutoProcessor.from_pretrained(path, local_files_only=True)
    model = tf.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.bfloat16, local_files_only=True)
    model = model.to("cuda").eval()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    del model, processor
    gc.collect()
    torch.cuda.empty_cache()
    return seconds


def leaks(args) -> None:
    paths = {family: weights(family, args.out / family, False) for family in FAMILIES}
    config = config_for(paths, False, batch_pages=1, compile=False)  # the load itself, as before
    page = render_lines(RUSSIAN + ENGLISH)  # A4 at 200 dpi
    baseline = torch.cuda.memory_allocated()
    loader = Runtime(config).loader
    rows = []
    for family in FAMILIES:
        bare_load(paths[family])  # warm the page cache for both paths alike
        bare, loads, inner, peaks, pages, left = [], [], [], [], [], []
        for _ in range(args.cycles):
            bare.append(bare_load(paths[family]))
            started = time.perf_counter()
            model = loader.load_model(family)
            loads.append(time.perf_counter() - started)
            inner.append(model.load_seconds)
            reset_peak()
            started = time.perf_counter()
            result = model.process_image(page)
            pages.append(time.perf_counter() - started)
            assert result.error is None, result.error
            peaks.append(peak())
            del model, result
            report = loader.unload_all_models()
            left.append(torch.cuda.memory_allocated() - baseline)
            if report.leftover_bytes:
                print(f"{family}: {report}", flush=True)
        rows.append((family, statistics.median(bare), statistics.median(loads), statistics.median(inner),
                     statistics.median(pages), max(peaks), max(left)))

    print(f"\n{args.cycles} cycles of load → one A4 page (200 dpi, shrunk to ~1 Mpx, {NEW_TOKENS} new tokens at "
          "most) → unload")
    print(f"{'model':<10}{'bare load':>11}{'ModelLoader':>13}{'(loading)':>11}{'ratio':>7}{'page':>8}"
          f"{'peak GB':>9}{'left after unload':>19}")
    for family, bare, load, inner_s, page_s, peak_b, left_b in rows:
        print(f"{family:<10}{bare:>10.2f}s{load:>12.2f}s{inner_s:>10.2f}s{load / bare:>6.2f}×{page_s:>7.2f}s"
              f"{peak_b / 1e9:>9.2f}{left_b:>16d} B")

    # Over the cap: a 3 GiB card cannot hold the 4.4 GB model; the load fails cleanly.
    cap(3 * 2**30)
    try:
        loader.load_model("qwen2_vl")
        print("\nover the cap: loaded?! (the cap did not apply)")
    except NotAvailable as exc:
        print(f"\nover a 3 GiB cap: {exc}")
    gc.collect()
    torch.cuda.empty_cache()
    print(f"allocated after the failed load: {torch.cuda.memory_allocated() - baseline} B over the baseline")
    cap()
    model = loader.load_model("qwen2_vl")
    ok = model.process_image(page).error is None
    del model
    report = loader.unload_all_models()
    print(f"then under the 12 GiB cap: loaded and read a page: {ok}; unload {report}")


# --- part: speed -----------------------------------------------------------------------------------

def load_timed(runtime: Runtime, family: str) -> tuple[local.LocalModel, float, float]:
    """The model, its load (weights) seconds and its warm-up (batch size, compile) seconds."""
    marks = {}
    started = time.perf_counter()
    model = runtime.loader.load_model(
        family, on_progress=lambda message: marks.setdefault("ready", time.perf_counter()) if " ready in " in message
        else None)
    ended = time.perf_counter()
    weights_done = marks.get("ready", ended)
    # Random weights end a page whenever they happen to pick end-of-sequence: force the count.
    model.hf_model.generation_config.min_new_tokens = model.requests.max_tokens
    return model, weights_done - started, ended - weights_done


def graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def read(model: local.LocalModel, pages: list[Page]) -> dict:
    """Seconds for the pages, to the first words (one page, streamed) or the first page."""
    first: list[float] = []
    if cuda():
        torch.cuda.synchronize()
    started = time.perf_counter()
    stamp = lambda *_: first.append(time.perf_counter() - started) if not first else None  # noqa: E731
    result = model.view().ocr(pages, on_text=stamp if len(pages) == 1 else None,
                              on_page=None if len(pages) == 1 else stamp)
    seconds = time.perf_counter() - started
    errors = [page.error for page in result.pages if page.error]
    assert not errors, errors
    tokens = len(pages) * model.requests.max_tokens
    return {"seconds": seconds, "first": first[0] if first else seconds, "pages_min": 60 * len(pages) / seconds,
            "tokens_s": tokens / seconds}


def measure_path(config, family: str, pages: list[Page]) -> dict:
    baseline = allocated()
    # A runtime per path, for its config: the first path compiles nothing, so the second's
    # thread is the first to record CUDA graphs in this process.
    runtime = Runtime(config)
    model, load_s, warm_s = load_timed(runtime, family)
    row = {"load": load_s, "warm_up": warm_s, "batch": model.batch_size, "compiled": model.compiled}
    read(model, pages[:1])  # one untimed page for either path: CUDA's own first-use costs
    reset_peak()
    before = graphs()
    row["one"] = read(model, pages[:1])
    row["doc"] = read(model, pages)
    if model.compiled:  # pages of other shapes, and a batch short of full, must find their graphs made
        landscape = Page(0, render_lines(ENGLISH, size=(2339, 1654)))
        read(model, [landscape])
        read(model, pages[:3])
    row["recompiles"] = graphs() - before
    row["peak"] = peak()
    del model
    runtime.close()
    row["left"] = allocated() - baseline
    return row


def warm_load(args) -> None:
    """A second load in a fresh process, finding the Inductor cache the first one filled."""
    begin(args)
    config = config_for({args.family: args.path}, args.smoke, compile=True)
    model, load_s, warm_s = load_timed(Runtime(config), args.family)
    ok = model.view().ocr(document(1)).pages[0].error is None
    print(json.dumps({"load": load_s, "warm_up": warm_s, "compiled": model.compiled, "read": ok}))


def speed(args) -> None:
    begin(args)
    # A data dir of its own: an empty compile cache, so the first load compiles everything.
    os.environ["CHATVLMLLM_DATA_DIR"] = tempfile.mkdtemp(prefix="chatvlmllm-bench-")
    path = weights(args.family, args.out / args.family, args.smoke)
    pages = document(8)
    today = measure_path(config_for({args.family: path}, args.smoke, batch_pages=1, compile=False), args.family, pages)
    print("today's path measured", flush=True)
    new = measure_path(config_for({args.family: path}, args.smoke, compile=True), args.family, pages)
    print("new path measured", flush=True)
    second = subprocess.run([sys.executable, __file__, *(["--smoke"] if args.smoke else []),
                             "warm-load", args.family, "--path", str(path)],
                            capture_output=True, text=True, env={**os.environ}, timeout=540)
    if second.returncode:
        print(second.stderr[-3000:])
    warm = json.loads(second.stdout.strip().splitlines()[-1]) if second.returncode == 0 else None

    device = torch.cuda.get_device_name(0) if cuda() else "CPU (smoke)"
    print(f"\n{args.family}: {device}, capped at {CARD / 2**30:.0f} GiB; torch {torch.__version__}, "
          f"transformers {tf.__version__}; pages A4 at ~1 Mpx, {8 if args.smoke else NEW_TOKENS} new tokens "
          "forced per page")
    print(f"{'path':<34}{'pages/min':>10}{'tokens/s':>10}{'first':>9}{'peak GB':>9}{'left B':>8}")
    for name, row in (("today: 1 page", today["one"]), ("today: 8 pages, one by one", today["doc"]),
                      ("new: 1 page (compiled)", new["one"]),
                      (f"new: 8 pages (batches of {new['batch']}, compiled)", new["doc"])):
        side = today if name.startswith("today") else new
        print(f"{name:<34}{row['pages_min']:>10.1f}{row['tokens_s']:>10.1f}{row['first']:>8.2f}s"
              f"{side['peak'] / 1e9:>9.2f}{side['left']:>8d}")
    ratio_doc = new["doc"]["pages_min"] / today["doc"]["pages_min"]
    ratio_one = new["one"]["tokens_s"] / today["one"]["tokens_s"]
    print(f"8 pages: {ratio_doc:.1f}× pages/min (goal ≥ 8×); one page: {ratio_one:.1f}× tokens/s (goal ≥ 3.5×); "
          f"peak {new['peak'] / 1e9:.2f} GB (goal ≤ 10); left after unload {new['left']} B (goal 0)")
    print(f"compiled: {new['compiled']}; warm-up on the first load (empty Inductor cache) {new['warm_up']:.1f} s "
          f"after {new['load']:.1f} s of loading weights")
    if warm:
        print(f"second load in a fresh process (warm cache): warm-up {warm['warm_up']:.1f} s = "
              f"{100 * warm['warm_up'] / new['warm_up']:.0f} % of the first (goal ≤ 25 %); compiled: "
              f"{warm['compiled']}; read a page: {warm['read']}")
    print(f"graphs compiled after the warm-up by pages of other shapes and a short batch: {new['recompiles']} "
          "(goal 0)")


# --- part: switch ----------------------------------------------------------------------------------

def switch_back(args, family: str) -> dict:
    """A → B → A, today's way and with A kept, in one runtime (one GPU thread, as the app has)."""
    path = weights(family, args.out / family, args.smoke)
    a, b = family, f"{family}_b"
    # Kept: A only, whatever the host has (the bench says how much was pinned).
    config = config_for({a: path, b: path}, args.smoke,
                        {"keep_in_ram": 1, "keep_in_ram_gb": 64, "keep_min_available_gb": 0}, compile=True)
    times = StartTimes(lock_dir(config))
    runtime = Runtime(config)
    loader = runtime.loader
    page = document(1)
    baseline = allocated()
    row = {}
    started = time.perf_counter()
    model = loader.load_model(a)
    row["first"] = time.perf_counter() - started  # an empty Inductor cache: the cold compile
    text = model.view().ocr(page).pages[0].text
    del model
    loader.load_model(b)  # A kept; B compiled from the warm cache
    print(f"{family}: A loaded and compiled in {row['first']:.1f} s, B loaded", flush=True)

    # Today: B unloaded, A read from disk and built, then warmed up.
    loader.free_kept()
    started = time.perf_counter()
    unload = loader.unload_all_models(keep=False)
    unloaded = time.perf_counter() - started
    row["today_left"] = unload.leftover_bytes
    model = loader.load_model(a)
    row["today_wall"] = time.perf_counter() - started
    row["today_same"] = model.view().ocr(page).pages[0].text == text
    loaded = times.last(a, "load").stages
    row["today"] = {"stop": unloaded - unload.memory_s + loaded["stop"], "memory": unload.memory_s,
                    "start": loaded["start"], "warm_up": loaded["warm_up"]}
    del model
    print(f"{family}: today's way {row['today_wall']:.1f} s {row['today']}", flush=True)
    loader.load_model(b)  # A kept again
    kept = loader.kept()
    row["pinned"] = loader.kept_bytes()

    # Kept: B moved to host memory, A copied back, then warmed up.
    started = time.perf_counter()
    model = loader.load_model(a)
    row["kept_wall"] = time.perf_counter() - started
    row["kept_left"] = loader.last_unload.leftover_bytes if loader.last_unload else None
    row["kept_was"] = kept
    row["kept"] = times.last(a, "kept").stages
    row["kept_same"] = model.view().ocr(page).pages[0].text == text
    print(f"{family}: kept {row['kept_wall']:.1f} s {row['kept']}, {row['pinned'] / 1e9:.2f} GB pinned", flush=True)
    del model
    runtime.close()
    row["left"] = allocated() - baseline
    return row


def switch(args) -> None:
    begin(args)
    os.environ["CHATVLMLLM_DATA_DIR"] = tempfile.mkdtemp(prefix="chatvlmllm-bench-")
    rows = {family: switch_back(args, family) for family in args.families or ["qwen2_vl"]}
    device = torch.cuda.get_device_name(0) if cuda() else "CPU (smoke)"
    print(f"\nswitching back A → B → A: {device}, capped at {CARD / 2**30:.0f} GiB; torch {torch.__version__}, "
          f"transformers {tf.__version__}; compiled decoding, the Inductor cache warm")
    print(f"{'model':<10}{'path':<7}{'stop':>8}{'memory':>8}{'start':>8}{'warm-up':>9}{'total':>8}{'wall':>8}"
          f"{'left after unload':>19}{'same text':>11}")
    for family, row in rows.items():
        for path in ("today", "kept"):
            stages = row[path]
            total = sum(stages.values())
            print(f"{family:<10}{path:<7}" + "".join(f"{stages[s]:>7.2f}s" for s in ("stop", "memory", "start"))
                  + f"{stages['warm_up']:>8.2f}s{total:>7.2f}s{row[path + '_wall']:>7.2f}s"
                  f"{str(row[path + '_left']) + ' B':>19}{str(row[path + '_same']):>11}")
        today, kept = sum(row["today"].values()), sum(row["kept"].values())
        print(f"{family}: kept {today / kept:.1f}× faster than today's (goal ≥ 3×); host memory for "
              f"{', '.join(row['kept_was'])}: {row['pinned'] / 1e9:.2f} GB; first load with an empty "
              f"cache {row['first']:.1f} s; left on the GPU after closing: {row['left']} B (goal 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/chatvlmllm-bench-models"))
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: try the script, no numbers")
    parts = parser.add_subparsers(dest="part", required=True)
    parts.add_parser("leaks").add_argument("--cycles", type=int, default=5)
    parts.add_parser("speed").add_argument("family", choices=FAMILIES)
    # nargs="*" with choices refuses an empty list (Python < 3.12): checked below
    parts.add_parser("switch").add_argument("families", nargs="*", metavar="qwen2_vl|qwen3_vl")
    warm = parts.add_parser("warm-load")
    warm.add_argument("family", choices=FAMILIES)
    warm.add_argument("--path", type=Path, required=True)
    for part in parts.choices.values():  # after the part's name too
        part.add_argument("--smoke", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "switch" and not set(args.families) <= set(FAMILIES):
        parser.error(f"switch: families are {', '.join(FAMILIES)}")
    if cuda():
        print(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}, transformers {tf.__version__}",
              flush=True)
    {"leaks": leaks, "speed": speed, "switch": switch, "warm-load": warm_load}[args.part](args)


if __name__ == "__main__":
    main()
