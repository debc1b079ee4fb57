"""Local models kept in host memory after an unload (local.keep_in_ram), on the CPU with tiny
random-weight models: loading one again takes it back instead of reading it, gives the same
answers (compiled decoding too), evicts the oldest past the count and the budget, holds no
claim on the GPU, and records each load's stages.

The weights are redrawn after the first load (tests/test_local_decoding.py's ``diverse``), so
a model read from disk again would answer differently from the one kept."""

import gc
import weakref

import pytest
import transformers

from managers import host_memory, kept_models
from managers.arbiter import Arbiter
from managers.engines import local
from managers.locks import held_by_someone
from managers.runtime import Runtime
from managers.start_times import StartTimes
from models.config import load_config, lock_dir
from models.document import Page
from tests.containers import local_entry, write_config
from tests.test_local_decoding import PAGES, CountingBackend, diverse, tokens_alone

pytestmark = pytest.mark.local


@pytest.fixture
def make_config(tmp_path, tiny_dirs, monkeypatch):
    def make(**settings):
        path = write_config(tmp_path / "c.yaml", {
            "a": local_entry("a", tiny_dirs["qwen2_vl"], batch_pages=1),
            "b": local_entry("b", tiny_dirs["qwen3_vl"], factor=32, batch_pages=1),
            "c": local_entry("c", tiny_dirs["qwen2_vl"], batch_pages=1),
            "d": local_entry("d", tiny_dirs["qwen2_vl"], batch_pages=1),
            "compiled": local_entry("compiled", tiny_dirs["qwen2_vl"], batch_pages=3, compile=True),
        }, local=settings)
        monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
        return load_config(path)
    return make


@pytest.fixture
def config(make_config):
    return make_config(keep_in_ram=1)


@pytest.fixture
def reads(monkeypatch):
    """Counts the models read from disk."""
    read = []
    real = transformers.AutoModelForImageTextToText.from_pretrained

    def counted(*args, **kwargs):
        read.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", counted)
    return read


def test_a_model_loaded_again_comes_from_host_memory_with_the_same_answers(runtime, reads):
    loader = runtime.loader
    first = loader.load_model("a")
    diverse(first)  # unlike the weights on disk
    before = tokens_alone(first, PAGES[:2])
    held = first.hf_model
    loader.load_model("b")
    assert loader.kept() == ["a"] and first.hf_model is None  # the old engine and its views let go
    said = []
    again = loader.load_model("a", on_progress=said.append)
    assert "loading Tiny a from host memory" in said
    assert len(reads) == 2  # a and b once each: a came back without being read
    assert again.hf_model is held and tokens_alone(again, PAGES[:2]) == before
    assert loader.kept() == ["b"]
    holder = Arbiter(runtime.config).holder()  # the arbiter sees the one model loaded, not the kept
    assert (holder.mode, holder.model) == ("local", "a")


def test_keep_in_ram_zero_reads_the_model_again(make_config, reads):
    runtime = Runtime(make_config(keep_in_ram=0))
    try:
        held = weakref.ref(runtime.loader.load_model("a").hf_model)
        runtime.loader.load_model("b")
        gc.collect()
        assert held() is None and runtime.loader.kept() == []
        runtime.loader.load_model("a")
        assert len(reads) == 3
    finally:
        runtime.close()


def test_the_oldest_goes_past_the_count(make_config):
    runtime = Runtime(make_config(keep_in_ram=2))
    loader = runtime.loader
    try:
        oldest = weakref.ref(loader.load_model("a").hf_model)
        loader.load_model("b")
        loader.load_model("c")
        assert loader.kept() == ["a", "b"]
        loader.load_model("d")
        gc.collect()
        assert loader.kept() == ["b", "c"] and oldest() is None
    finally:
        runtime.close()


def test_the_oldest_goes_past_the_budget_and_a_model_over_it_is_not_kept(make_config):
    probe = Runtime(make_config(keep_in_ram=0))
    size = kept_models.model_bytes(probe.loader.load_model("a").hf_model)
    probe.close()
    runtime = Runtime(make_config(keep_in_ram=4, keep_in_ram_gb=1.5 * size / 1e9))  # one tiny Qwen2-VL fits, two do not
    loader = runtime.loader
    try:
        oldest = weakref.ref(loader.load_model("a").hf_model)
        loader.load_model("c")
        assert loader.kept() == ["a"]
        loader.load_model("d")
        gc.collect()
        assert loader.kept() == ["c"] and oldest() is None
    finally:
        runtime.close()
    runtime = Runtime(make_config(keep_in_ram=4, keep_in_ram_gb=0.5 * size / 1e9))
    try:
        runtime.loader.load_model("a")
        runtime.loader.load_model("c")
        assert runtime.loader.kept() == []
    finally:
        runtime.close()


def test_a_model_kept_again_replaces_its_older_copy_as_the_newest(make_config):
    """Two sessions loading one kept model at once: the second finds it taken, reads it from
    disk, and its unload keeps a second copy. The older must go (on CUDA its page-locked buffer
    unpinned), not stay counted as the oldest while the newer copy is evicted first."""
    config = make_config(keep_in_ram=0)  # the loader keeps nothing: this test's KeptModels does
    runtime = Runtime(config)
    kept = kept_models.KeptModels(config.local.model_copy(update={"keep_in_ram": 3}))
    try:
        older = runtime.loader.load_model("a").hf_model
        other = runtime.loader.load_model("b").hf_model
        assert kept.keep("a", older, None, "cpu") and kept.keep("b", other, None, "cpu")
        newer = runtime.loader.load_model("a").hf_model  # read from disk again: another copy
        older = weakref.ref(older)
        assert kept.keep("a", newer, None, "cpu")
        gc.collect()
        assert kept.keys() == ["b", "a"] and older() is None and kept.take("a").hf_model is newer
    finally:
        kept.clear()
        runtime.close()


def test_nothing_is_kept_that_would_leave_too_little_available_memory(make_config):
    available = host_memory.available_bytes()
    assert available and available > 0  # read from /proc/meminfo
    runtime = Runtime(make_config(keep_in_ram=2, keep_min_available_gb=2 * available / 1e9))
    try:
        held = weakref.ref(runtime.loader.load_model("a").hf_model)
        runtime.loader.load_model("b")
        gc.collect()
        assert runtime.loader.kept() == [] and held() is None
    finally:
        runtime.close()


def test_a_kept_model_holds_no_claim_and_the_unload_says_where_it_stays(config, runtime):
    runtime.loader.load_model("a")
    report = runtime.arbiter.release_local()
    assert str(report) == "freed 0.00 GB; Tiny a stays in host memory, so loading it again is fast"
    assert report.leftover_bytes == 0 and runtime.loader.kept() == ["a"]
    assert runtime.arbiter.holder() is None and not held_by_someone(runtime.arbiter.dir / "local.lock")
    other = Runtime(config)  # acts as another process would: free to load, as nothing holds the GPU
    try:
        assert other.loader.load_model("b").key == "b"
        with pytest.raises(Exception, match="holds the GPU with Tiny b in local mode"):
            runtime.loader.load_model("a")
        assert runtime.loader.kept() == ["a"]  # refused before loading: still kept
    finally:
        other.close()
    assert runtime.loader.load_model("a").key == "a" and runtime.loader.kept() == []


def test_each_load_records_its_stages(config, runtime):
    times = StartTimes(lock_dir(config))
    for key in ("a", "b", "a"):
        runtime.loader.load_model(key)
    stages = {"stop", "memory", "start", "warm_up"}
    [first], [second] = times.timings("a", "load"), times.timings("a", "kept")
    assert set(first.stages) == set(second.stages) == stages
    assert first.stages["memory"] == 0  # nothing was unloaded before it (its stop: the claim making way)
    assert second.stages["memory"] > 0 and all(v >= 0 for v in second.stages.values())
    assert [set(t.stages) for t in times.timings("b", "load")] == [stages] and times.timings("b", "kept") == []
    assert times.estimate("a", "kept") == second.total


def test_compiled_decoding_gives_the_same_tokens_after_a_round_trip(runtime, monkeypatch):
    backend = CountingBackend()
    monkeypatch.setattr(local, "COMPILE_BACKEND", backend)
    model = runtime.loader.load_model("compiled")
    diverse(model)
    pages = [Page(n, image) for n, image in enumerate(PAGES[:4])]  # a batch of 3, then 1 padded to 3
    before = [page.text for page in model.view().ocr(pages).pages]
    assert len(set(before)) == 4 and backend.compiled == 2
    runtime.loader.load_model("a")
    assert runtime.loader.kept() == ["compiled"]
    again = runtime.loader.load_model("compiled")
    assert again.compiled and again.notes == [] and backend.compiled == 4  # its compiled code was let go: compiled again
    calls = backend.calls
    assert [page.text for page in again.view().ocr(pages).pages] == before
    assert backend.calls > calls  # read by the compiled step
    _, task = again.task(None)
    plain = [again._generate(*[[part] for part in again._messages(page, task)],
                             cache_implementation="dynamic")[0].text for page in pages]
    assert plain == before


def test_moving_a_model_keeps_its_ties_and_moves_every_tensor(runtime):
    """The move that takes a model to page-locked memory and back, here to new CPU storage."""
    model = runtime.loader.load_model("a")
    diverse(model)
    hf = model.hf_model
    hf.get_input_embeddings().weight = hf.lm_head.weight  # tied, as the 2B checkpoints are
    before = tokens_alone(model, PAGES[:1])
    parameters = list(hf.parameters())
    tensors = [*parameters, *hf.buffers(), hf.model.rope_deltas]  # rope_deltas: left by the last generate
    storage = [t.data_ptr() for t in tensors]
    kept_models.move(hf, lambda t: t.clone())
    assert list(hf.parameters()) == parameters  # the same objects: nothing refers to an old one
    assert hf.get_input_embeddings().weight is hf.lm_head.weight
    after = [*hf.parameters(), *hf.buffers(), hf.model.rope_deltas]
    assert len(after) == len(tensors) and not set(t.data_ptr() for t in after) & set(storage)
    assert tokens_alone(model, PAGES[:1]) == before


def test_closing_the_runtime_lets_kept_models_go(config):
    runtime = Runtime(config)
    held = weakref.ref(runtime.loader.load_model("a").hf_model)
    runtime.loader.load_model("b")
    assert runtime.loader.kept() == ["a"]
    runtime.close()
    gc.collect()
    assert held() is None and runtime.loader.kept() == []
