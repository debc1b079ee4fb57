#!/usr/bin/env python3
"""Local mode on a real GPU, under the 12 GB card's budget: load → one A4 page → unload,
ten times per model, for random-weight models of the real Qwen2-VL-2B and Qwen3-VL-2B
architectures (built and saved here: nothing is downloaded).

Prints, per model: ModelLoader's load time next to a bare processor + model
``from_pretrained(...).to("cuda")`` in the same run, peak memory for the page, and memory
still allocated after each unload (goal: 0 bytes over the baseline; load within 1.2× of
the bare call). Then one model is pushed over the cap to show the out-of-memory path
recovers. Run it with the `device` tool:  python3 bench/local_gpu.py [--cycles 10]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers as tf  # noqa: E402

from models.config import parse_config  # noqa: E402
from models.errors import NotAvailable  # noqa: E402
from managers.model_loader import ModelLoader  # noqa: E402
from tests.fixtures.tiny_vlm import CHAT_TEMPLATE, SPECIAL, build_tokenizer  # noqa: E402
from tests.helpers import ENGLISH, RUSSIAN, render_lines  # noqa: E402

CARD = 12 * 2**30  # the reference RTX 5070 Ti


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("/tmp/chatvlmllm-bench-models"))
    args = parser.parse_args()

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(CARD / total)
    print(f"{torch.cuda.get_device_name(0)}, capped at {CARD / 2**30:.0f} GiB of {total / 2**30:.0f} GiB; "
          f"torch {torch.__version__}, transformers {tf.__version__}", flush=True)
    paths = {}
    for family in ("qwen2_vl", "qwen3_vl"):
        started = time.perf_counter()
        paths[family] = real_architecture(family, args.out / family)
        print(f"built {family} in {time.perf_counter() - started:.0f} s", flush=True)

    def entry(name, family, factor, max_pixels):
        return {"name": name, "vram_gb": 5.0, "max_pixels": max_pixels, "min_pixels": 3136,
                "resize_factor": factor, "requests": {"max_tokens": 32},
                "tasks": {"text": {"label": "Text", "prompt": "Read all the text in the image."}},
                "local": {"model_id": f"bench/{family}", "path": str(paths[family]), "dtype": "bfloat16"}}

    config = parse_config({
        "default_model": "tesseract", "gpu": {"vram_total_gb": 12, "vram_usable_gb": 10, "vram_recommended_max_gb": 8},
        "limits": {"max_upload_mb": 200, "max_pages": 50, "max_image_pixels": 120_000_000, "pdf_dpi": 200},
        "models": {
            "qwen2_vl_2b": entry("Qwen2-VL-2B (random)", "qwen2_vl", 28, 1_003_520),  # the processor's default cap
            "qwen3_vl_2b": entry("Qwen3-VL-2B (random)", "qwen3_vl", 32, 1_003_520),
            "tesseract": {"name": "Tesseract", "vram_gb": 0, "tasks": {"text": {"label": "Text"}}, "cpu": {}},
        }})
    page = render_lines(RUSSIAN + ENGLISH)  # A4 at 200 dpi
    baseline = torch.cuda.memory_allocated()
    rows = []
    for key, family in (("qwen2_vl_2b", "qwen2_vl"), ("qwen3_vl_2b", "qwen3_vl")):
        bare_load(paths[family])  # warm the page cache for both paths alike
        bare, loads, inner, peaks, pages, left = [], [], [], [], [], []
        for _ in range(args.cycles):
            bare.append(bare_load(paths[family]))
            started = time.perf_counter()
            model = ModelLoader(config).load_model(key)
            loads.append(time.perf_counter() - started)
            inner.append(model.load_seconds)
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            result = model.process_image(page)
            pages.append(time.perf_counter() - started)
            assert result.error is None, result.error
            peaks.append(torch.cuda.max_memory_allocated())
            del model, result
            report = ModelLoader.unload_all_models()
            left.append(torch.cuda.memory_allocated() - baseline)
            if report.leftover_bytes:
                print(f"{key}: {report}", flush=True)
        rows.append((key, statistics.median(bare), statistics.median(loads), statistics.median(inner),
                     statistics.median(pages), max(peaks), max(left)))

    print(f"\n{args.cycles} cycles of load → one A4 page (200 dpi, shrunk to ~1 Mpx, 32 new tokens) → unload")
    print(f"{'model':<14}{'bare load':>11}{'ModelLoader':>13}{'(loading)':>11}{'ratio':>7}{'page':>8}"
          f"{'peak GB':>9}{'left after unload':>19}")
    for key, bare, load, inner_s, page_s, peak, left in rows:
        print(f"{key:<14}{bare:>10.2f}s{load:>12.2f}s{inner_s:>10.2f}s{load / bare:>6.2f}×{page_s:>7.2f}s"
              f"{peak / 1e9:>9.2f}{left:>16d} B")

    # Over the cap: a 3 GiB card cannot hold the 4.4 GB model; the load fails cleanly.
    torch.cuda.set_per_process_memory_fraction(3 * 2**30 / total)
    try:
        ModelLoader(config).load_model("qwen2_vl_2b")
        print("\nover the cap: loaded?! (the cap did not apply)")
    except NotAvailable as exc:
        print(f"\nover a 3 GiB cap: {exc}")
    gc.collect()
    torch.cuda.empty_cache()
    print(f"allocated after the failed load: {torch.cuda.memory_allocated() - baseline} B over the baseline")
    torch.cuda.set_per_process_memory_fraction(CARD / total)
    model = ModelLoader(config).load_model("qwen2_vl_2b")
    ok = model.process_image(page).error is None
    del model
    report = ModelLoader.unload_all_models()
    print(f"then under the 12 GiB cap: loaded and read a page: {ok}; unload {report}")


if __name__ == "__main__":
    main()
