"""Local mode on the CPU: tiny random-weight Qwen2-VL and Qwen3-VL built here and loaded
through the real from_pretrained path; one model at a time; memory given back; the arbiter
keeps a local model and a vLLM container off the GPU together."""

import gc
import os
import subprocess
import sys
import time
import weakref

import psutil
import pytest

from managers.arbiter import Arbiter
from managers.locks import held_by_someone
from models.config import load_config
from models.errors import NotAvailable
from managers.runtime import Runtime
from tests.conftest import ROOT
from tests.containers import cli, fake_entry, local_entry, running_managed, write_config
from tests.helpers import ENGLISH, encode, render_lines

pytestmark = pytest.mark.local


@pytest.fixture
def config(tmp_path, tiny_dirs, monkeypatch):
    path = write_config(tmp_path / "c.yaml", {
        "tiny2": local_entry("tiny2", tiny_dirs["qwen2_vl"]),
        "tiny3": local_entry("tiny3", tiny_dirs["qwen3_vl"], factor=32),
        "fake_a": fake_entry("fake_a"),
    })
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    return load_config(path)


@pytest.mark.parametrize("key", ["tiny2", "tiny3"])
def test_load_and_read_a_page(runtime, key):
    model = runtime.loader.load_model(key)
    assert model.device == "cpu" and model.engine_name == "transformers" and model.load_seconds > 0
    page = model.process_image(render_lines(ENGLISH))
    assert page.error is None, page.error
    assert (page.width, page.height) == (1654, 2339)
    assert page.blocks[0].bbox == (0, 0, 1654, 2339)
    assert isinstance(page.text, str)


def test_one_model_at_a_time_and_no_reference_left(config):
    """With nothing kept in host memory (local.keep_in_ram: 0), an unload lets go of everything."""
    from models.config import LocalMode

    runtime = Runtime(config.model_copy(update={"local": LocalMode(keep_in_ram=0)}))
    loader = runtime.loader
    first = weakref.ref(loader.load_model("tiny2").hf_model)
    assert loader.load_model("tiny2").hf_model is first()  # the same model joins
    second = loader.load_model("tiny3")
    gc.collect()
    assert first() is None and loader.current() is second
    arbiter = Arbiter(config)  # the second model is held like the first: locked and recorded
    assert held_by_someone(arbiter.dir / "local.lock") and arbiter.holder().model == "tiny3"
    held = weakref.ref(second.hf_model)
    report = loader.unload_all_models()
    assert held() is None and loader.current() is None and loader.kept() == []
    assert report.leftover_bytes == 0 and str(report) == "freed 0.00 GB"
    runtime.close()


def test_resident_memory_is_stable_over_load_unload_cycles(runtime):
    loader = runtime.loader
    process = psutil.Process()

    def cycle():
        loader.load_model("tiny2").process_image(render_lines(ENGLISH[:1], size=(600, 200)))
        loader.unload_all_models()

    for _ in range(5):
        cycle()
    gc.collect()
    before = process.memory_info().rss
    for _ in range(20):
        cycle()
    gc.collect()
    grown = process.memory_info().rss - before
    assert grown < 100 * 2**20, f"resident memory grew by {grown / 2**20:.0f} MB over 20 cycles"


def test_out_of_memory_while_reading_unloads_and_says_so(runtime, monkeypatch):
    import torch

    model = runtime.loader.load_model("tiny2")

    def oom(**kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model.hf_model, "generate", oom)
    page = model.process_image(render_lines(ENGLISH[:1], size=(600, 200)))
    assert page.error == ("The GPU ran out of memory reading page 1; Tiny tiny2 was unloaded. "
                          "Lower its max_pixels or pick a smaller model.")
    assert runtime.loader.current() is None
    assert runtime.loader.load_model("tiny3").process_image(render_lines(["x"], size=(300, 100))).error is None


def test_out_of_memory_while_loading(runtime, monkeypatch):
    import torch
    import transformers

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", oom)
    with pytest.raises(NotAvailable, match="Tiny tiny2 did not fit in GPU memory while loading"):
        runtime.loader.load_model("tiny2")
    assert runtime.loader.current() is None


def test_missing_weights_and_foreign_model_code(tmp_path, tiny_dirs):
    import shutil
    import json

    broken = tmp_path / "remote-code"
    shutil.copytree(tiny_dirs["qwen2_vl"], broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_dots.DotsOCRConfig",
                       "AutoModelForImageTextToText": "modeling_dots_ocr.DotsOCRForCausalLM"}
    cfg["model_type"] = "dots_ocr"
    (broken / "config.json").write_text(json.dumps(cfg))
    config = load_config(write_config(tmp_path / "c.yaml", {
        "remote": local_entry("remote", broken, trust_remote_code=True),
        "absent": {**local_entry("absent", tmp_path), "local": {"model_id": "org/not-downloaded"}},
    }))
    loader = Runtime(config).loader
    with pytest.raises(NotAvailable, match=r"Tiny remote's own model code does not run on Transformers 5\.\S+ "
                                           r"\(.*\); use vLLM mode for this model\."):
        loader.load_model("remote")
    with pytest.raises(NotAvailable, match="The weights of org/not-downloaded are not on this machine — "
                                           "download them with: hf download org/not-downloaded"):
        loader.load_model("absent")


def test_cli_reads_in_local_mode(config, tmp_path):
    (tmp_path / "p.png").write_bytes(encode(render_lines(ENGLISH), "PNG"))
    done = cli("ocr", tmp_path / "p.png", "--model", "tiny3", "--mode", "local", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "Tiny tiny3 ready in" in done.stderr and "runs on the CPU, which is slow" in done.stderr
    assert '"engine": "transformers"' in done.stdout


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
from managers.runtime import Runtime
from models.config import load_config
Runtime(load_config()).loader.load_model("tiny2")
print("loaded", flush=True)
time.sleep(120)
"""


def test_another_process_holding_a_local_model_is_named(config, runtime):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT))], stdout=subprocess.PIPE,
                              text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "loaded"
        expected = f"Process {holder.pid} holds the GPU with Tiny tiny2 in local mode; unload it there"
        with pytest.raises(NotAvailable, match=expected):
            runtime.loader.load_model("tiny3")
        with pytest.raises(NotAvailable, match=expected):
            runtime.arbiter.switch("fake_a")
    finally:
        holder.kill()
        holder.wait()
    assert runtime.loader.load_model("tiny3").key == "tiny3"  # a dead holder frees it


@pytest.mark.docker
def test_local_load_stops_the_vllm_container_and_vllm_unloads_local(runtime, clean_docker):
    arbiter = runtime.arbiter
    arbiter.switch("fake_a")
    assert running_managed(clean_docker) == ["chatvlmllm-test-fake_a"]
    runtime.loader.load_model("tiny2")
    assert running_managed(clean_docker) == []
    assert (arbiter.holder().mode, arbiter.holder().model) == ("local", "tiny2")
    arbiter.switch("fake_a")
    assert runtime.loader.current() is None
    assert (arbiter.holder().mode, arbiter.holder().model) == ("vllm", "fake_a")


def test_sidebar_loads_and_unloads(config):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from views.cached import process_runtime

    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="mode").set_value("local").run()
    at.sidebar.selectbox(key="model_local").set_value("tiny3").run()
    at.sidebar.button(key="local_load").click().run()
    assert not at.exception and not at.sidebar.error
    assert "**Active model:** Tiny tiny3 (local, cpu)" in [m.value for m in at.sidebar.markdown]
    assert any(c.value.startswith("Unloads after 30 min without use (at ") for c in at.sidebar.caption)
    at.file_uploader[0].upload("p.png", encode(render_lines(ENGLISH), "PNG"), "image/png")
    at.run()
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception and at.success[0].value.startswith("Read 1 of 1 pages with transformers")
    at.sidebar.button(key="local_unload").click().run()
    assert "**Active model:** none" in [m.value for m in at.sidebar.markdown]
    assert any(c.value.startswith("Unloaded: freed") for c in at.sidebar.caption)
    assert process_runtime(config).loader.current() is None  # the app's one runtime
    st.cache_resource.clear()


def test_idle_unload_frees_the_local_model(tmp_path, tiny_dirs, monkeypatch):
    from managers import runs

    path = write_config(tmp_path / "idle.yaml", {"tiny2": local_entry("tiny2", tiny_dirs["qwen2_vl"])},
                        idle_unload_s=1)
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    runtime = Runtime(load_config(path))
    runs.load(runtime, "tiny2").wait()
    runtime.watch_idle()
    try:
        deadline = time.monotonic() + 60
        while runtime.loader.current() is not None or runtime.arbiter.holder() is not None:
            assert time.monotonic() < deadline, "the idle model was never unloaded"
            time.sleep(0.1)
    finally:
        runtime.close()
