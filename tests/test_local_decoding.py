"""Local mode's fast paths on the CPU with tiny random-weight models (fp32, no timings):
pages decoded in batches, decoding compiled over a static cache, answers streamed.

The tiny models' weights are redrawn wider after loading (``diverse``): at their built scale
every page gets the same answer, and a test of page order or of batch rows would pass
whatever the rows held. Each test first checks that its pages' answers differ."""

import os
import threading
import weakref

import numpy as np
import pytest
from PIL import Image

from managers.engines import local
from models.answers import fit_to_model
from managers.start_times import StartTimes
from models.config import load_config, lock_dir
from models.document import Page
from models.errors import Cancelled
from tests.containers import local_entry, write_config
from tests.helpers import ENGLISH, render_lines

pytestmark = pytest.mark.local


def noise(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


# Pages of different sizes: different prompt lengths, so a batch really is left-padded.
PAGES = [render_lines(ENGLISH), noise(1200, 600, 1), noise(500, 700, 2), noise(800, 1100, 4),
         noise(640, 640, 3)]


@pytest.fixture
def config(tmp_path, tiny_dirs, monkeypatch):
    def entry(name, family="qwen2_vl", **local_settings):
        return local_entry(name, tiny_dirs[family], factor=28 if family == "qwen2_vl" else 32, **local_settings)

    path = write_config(tmp_path / "c.yaml", {
        "plain2": entry("plain2", batch_pages=1),
        "batch2": entry("batch2", batch_pages=3),
        "batch3": entry("batch3", "qwen3_vl", batch_pages=3),
        "batch4": entry("batch4", batch_pages=4),
        "compiled2": entry("compiled2", batch_pages=3, compile=True),
        "cpu2": entry("cpu2"),
        "long2": {**entry("long2", batch_pages=1), "requests": {"max_tokens": 48}},
    })
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    return load_config(path)


def diverse(model) -> None:
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for weights in model.hf_model.parameters():
            if weights.dim() > 1:
                weights.normal_(0, 0.3)


def load(runtime, key):
    model = runtime.loader.load_model(key)
    diverse(model)
    return model


def tokens_alone(model, images) -> list[list[int]]:
    _, task = model.task(None)
    requests = [model._messages(Page(n, image), task) for n, image in enumerate(images)]
    return [model._generate([image], [messages])[0].tokens for image, messages in requests]


@pytest.mark.parametrize("key", ["batch2", "batch3"])
def test_a_batch_gives_the_same_tokens_as_the_pages_one_by_one(runtime, key):
    model = load(runtime, key)
    _, task = model.task(None)
    alone = tokens_alone(model, PAGES[:3])
    assert len({tuple(t) for t in alone}) == 3  # the pages' answers differ: rows cannot be swapped unseen
    requests = [model._messages(Page(n, image), task) for n, image in enumerate(PAGES[:3])]
    together = model._generate([i for i, _ in requests], [m for _, m in requests])
    assert [answer.tokens for answer in together] == alone


def test_a_document_is_read_in_batches_in_page_order(runtime, monkeypatch):
    model = load(runtime, "batch2")
    alone = [model.process_image(image).text for image in PAGES]
    assert len(set(alone)) == len(PAGES)
    sizes = []
    real = local.LocalModel.read_batch
    monkeypatch.setattr(local.LocalModel, "read_batch", lambda self, pages, task: (
        sizes.append(len(pages)), real(self, pages, task))[1])
    done = []
    result = model.view().ocr([Page(n, image) for n, image in enumerate(PAGES)],
                              on_page=lambda n, total, page: done.append(page.index))
    assert sorted(sizes) == [2, 3]  # five pages in batches of three
    assert [page.index for page in result.pages] == [0, 1, 2, 3, 4] and sorted(done) == [0, 1, 2, 3, 4]
    assert [page.text for page in result.pages] == alone
    assert all(page.error is None and page.seconds > 0 for page in result.pages)


def test_a_page_that_breaks_its_batch_is_read_again_alone(runtime, monkeypatch):
    model = load(runtime, "batch2")
    alone = [model.process_image(image).text for image in PAGES[:3]]
    calls = []
    real = local.LocalModel._generate
    poison = fit_to_model(PAGES[1], model.model).size  # the noisy landscape page, as the model sees it

    def generate(self, images, messages, *args, **kwargs):
        calls.append(len(images))
        if any(image.size == poison for image in images):
            raise RuntimeError("a kernel failed on this page")
        return real(self, images, messages, *args, **kwargs)

    monkeypatch.setattr(local.LocalModel, "_generate", generate)
    pages = [Page(n, image, warnings=[f"turned {n}"]) for n, image in enumerate(PAGES[:3])]
    result = model.view().ocr(pages)
    assert calls == [3, 1, 1, 1]
    assert result.pages[1].error == "Page 2 failed unexpectedly: a kernel failed on this page"
    assert [result.pages[0].text, result.pages[2].text] == [alone[0], alone[2]]
    assert [page.warnings[:1] for page in result.pages] == [["turned 0"], [], ["turned 2"]]  # kept alone too


def test_out_of_memory_in_a_batch_reads_the_pages_one_by_one_and_keeps_the_model(runtime, monkeypatch):
    import torch

    model = load(runtime, "batch2")
    calls = []
    real = local.LocalModel._generate

    def generate(self, images, messages, *args, **kwargs):
        calls.append(len(images))
        if len(images) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return real(self, images, messages, *args, **kwargs)

    monkeypatch.setattr(local.LocalModel, "_generate", generate)
    result = model.view().ocr([Page(n, image) for n, image in enumerate(PAGES[:3])])
    assert calls == [3, 1, 1, 1]
    assert [page.error for page in result.pages] == [None, None, None]
    assert runtime.loader.current() is model  # only out of memory at one page unloads


def test_out_of_memory_in_a_batch_halves_the_batches_until_the_model_is_loaded_again(runtime, monkeypatch):
    import torch

    model = load(runtime, "batch4")
    calls = []
    real = local.LocalModel._generate

    def generate(self, images, messages, *args, **kwargs):  # this GPU holds two pages at once
        calls.append(len(images))
        if len(images) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return real(self, images, messages, *args, **kwargs)

    monkeypatch.setattr(local.LocalModel, "_generate", generate)
    pages = [Page(n, image) for n, image in enumerate(PAGES + PAGES[:3])]
    view = model.view()
    view.concurrency = 1  # one batch at a time: the order of the calls is the test
    result = view.ocr(pages)
    assert calls == [4, 1, 1, 1, 1, 2, 2]  # the failed batch alone, then batches of half its size
    assert [page.error for page in result.pages] == [None] * 8
    calls.clear()
    assert [page.error for page in model.view().ocr(pages[:4]).pages] == [None] * 4
    assert calls == [2, 2] and model.batch_size == 2  # another document of this load: still lower
    runtime.loader.unload_all_models()
    again = runtime.loader.load_model("batch4")
    assert again.batch_size == 4  # loaded again: the full size is tried again


def test_cpu_defaults_read_one_page_at_a_time_uncompiled(runtime):
    model = runtime.loader.load_model("cpu2")
    assert (model.batch_size, model.compiled, model.notes) == (1, False, [])
    assert model.hf_model.generation_config.cache_implementation is None


def test_the_batch_size_is_what_the_measured_budget_holds():
    gb = 10**9
    assert local.batch_for(int(9.5 * gb), int(5.0 * gb), int(5.5 * gb)) == 8  # capped
    assert local.batch_for(int(9.5 * gb), int(5.0 * gb), int(6.0 * gb)) == 5
    assert local.batch_for(int(6.0 * gb), int(5.5 * gb), int(6.2 * gb)) == 1
    assert local.batch_for(int(4.0 * gb), int(5.0 * gb), int(6.0 * gb)) == 1  # over budget already


class CountingBackend:
    """A torch.compile backend that runs the traced graph eagerly (no compiler on CI), and
    counts graphs compiled and calls into them."""

    def __init__(self):
        self.compiled, self.calls = 0, 0

    def __deepcopy__(self, memo):  # Transformers copies its compile settings; the counts stay here
        return self

    def __call__(self, graph, example_inputs):
        self.compiled += 1

        def run(*args):
            self.calls += 1
            return graph.forward(*args)
        return run


def test_compiled_decoding_keeps_its_shapes_and_its_answers(runtime, monkeypatch):
    backend = CountingBackend()
    monkeypatch.setattr(local, "COMPILE_BACKEND", backend)
    model = runtime.loader.load_model("compiled2")
    assert model.compiled and model.batch_size == 3
    assert model.hf_model.generation_config.cache_implementation == "static"
    assert backend.compiled == 2 and backend.calls > 0  # one graph for one page, one for a batch: warmed up
    diverse(model)
    calls = backend.calls
    pages = [Page(n, image) for n, image in enumerate(PAGES[:4])]  # a batch of 3, then 1 padded to 3
    result = model.view().ocr(pages)
    assert backend.calls > calls  # the pages were decoded by the compiled step...
    assert backend.compiled == 2  # ...and pages of new sizes and a short batch compiled nothing new
    for shape in [(3000, 400), (400, 3000), (2339, 1654)]:  # extreme shapes stay in the cache compiled for
        calls = backend.calls
        assert model.view().ocr([Page(0, noise(*shape, 5))]).pages[0].error is None
        assert backend.calls > calls and backend.compiled == 2
    _, task = model.task(None)
    plain = [model._generate([model._messages(page, task)[0]], [model._messages(page, task)[1]],
                             cache_implementation="dynamic")[0].text for page in pages]
    assert [page.text for page in result.pages] == plain and len(set(plain)) == 4
    held = weakref.ref(model.hf_model)
    del model, result
    runtime.loader.unload_all_models(keep=False)  # kept in host memory: tests/test_local_kept.py
    assert held() is None  # compiled code let go of the weights
    again = runtime.loader.load_model("compiled2")  # loaded again in this process: compiled again
    assert again.compiled and again.notes == [] and backend.compiled == 4
    assert again.view().ocr([Page(0, PAGES[0])]).pages[0].error is None


def test_the_warm_up_says_how_long_it_usually_takes_and_caches_in_the_data_dir(config, runtime, monkeypatch, tmp_path):
    monkeypatch.setattr(local, "COMPILE_BACKEND", CountingBackend())
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    said = []
    runtime.loader.load_model("compiled2", on_progress=said.append)
    assert "compiling for faster reading… the first time takes a minute or two" in said
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "data" / "compile-cache")
    runtime.loader.unload_all_models()
    said.clear()
    first = StartTimes(lock_dir(config)).estimate("compile:compiled2:cpu", "warm_up")  # the first warm-up, timed
    runtime.loader.load_model("compiled2", on_progress=said.append)
    assert [m for m in said if m.startswith("compiling")] == [f"compiling for faster reading… usually {first:.0f} s"]


def test_cancel_while_compiling_stops_the_load_and_frees_the_model(runtime, monkeypatch):
    cancel = threading.Event()
    held = []

    class CancelledWhileCompiling(CountingBackend):
        def __call__(self, graph, example_inputs):
            held.append(weakref.ref(runtime.loader.current().hf_model))
            cancel.set()  # the user presses Cancel while the first shape compiles
            return super().__call__(graph, example_inputs)

    backend = CancelledWhileCompiling()
    monkeypatch.setattr(local, "COMPILE_BACKEND", backend)
    with pytest.raises(Cancelled) as stopped:
        runtime.loader.load_model("compiled2", cancel=cancel)
    assert str(stopped.value) == "Loading Tiny compiled2 was cancelled; it was unloaded."
    assert backend.compiled == 1  # the batch's shape was never compiled
    assert runtime.loader.current() is None
    assert held and held[0]() is None  # the weights are gone with the compiled code
    assert StartTimes(lock_dir(runtime.config)).estimate("compile:compiled2:cpu", "warm_up") is None  # a cut warm-up is no timing


def test_a_compile_that_fails_leaves_plain_decoding_and_one_warning(runtime, monkeypatch):
    attempts = []

    def broken(graph, example_inputs):
        attempts.append(graph)
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(local, "COMPILE_BACKEND", broken)
    model = runtime.loader.load_model("compiled2")
    assert attempts  # a compile was attempted...
    assert not model.compiled and model.hf_model.generation_config.cache_implementation is None
    note = ("Compiled decoding failed for Tiny compiled2 (BackendCompilerFailed); pages are read without it, "
            "more slowly.")
    for _ in range(2):  # ...and every document read after says so once
        result = model.view().ocr([Page(n, image) for n, image in enumerate(PAGES[:4])])
        assert [page.error for page in result.pages] == [None] * 4
        assert result.pages[0].warnings[0] == note
        assert sum(page.warnings.count(note) for page in result.pages) == 1


def test_a_streamed_page_ends_as_the_same_text(runtime):
    model = load(runtime, "long2")
    expected = model.process_image(PAGES[0])
    seen = []
    result = model.view().ocr([Page(0, PAGES[0])], on_text=lambda index, text: seen.append((index, text)))
    assert len(seen) >= 3 and {index for index, _ in seen} == {0}  # it came in pieces
    assert all(later.startswith(earlier) for (_, earlier), (_, later) in zip(seen, seen[1:]))
    assert seen[-1][1] == expected.text == result.pages[0].text


def test_a_chat_answer_streams(runtime):
    model = load(runtime, "long2")
    whole = model.view().chat(PAGES[0], [], "What is the total?")
    seen = []
    assert model.view().chat(PAGES[0], [], "What is the total?", on_text=seen.append) == whole
    assert len(seen) >= 3 and seen[-1] == whole


def test_cancel_stops_a_stream(runtime, monkeypatch):
    model = load(runtime, "long2")
    lengths = []
    real = model.hf_model.generate

    def generate(**kwargs):
        out = real(**kwargs)
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(model.hf_model, "generate", generate)
    assert len(model.view().chat(PAGES[0], [], "Read it.")) > 0 and lengths == [48]  # uncancelled: all 48
    cancel = threading.Event()
    view = model.view()

    def first_words(index, text):
        cancel.set()
        view.abort()  # what the page loop does on a cancel, without waiting for its poll

    result = view.ocr([Page(0, PAGES[0])], cancel=cancel, on_text=first_words)
    assert result.pages[0].error == "Page 1 was not read: cancelled."
    model._submit(lambda: None).result()  # the model's thread is free again: generation ended
    assert lengths[1] < 48


def test_a_chat_whose_reader_is_gone_stops_generating(runtime, monkeypatch):
    """A Streamlit rerun raises inside on_text: the answer nobody reads is not generated on."""
    model = load(runtime, "long2")
    lengths = []
    real = model.hf_model.generate
    monkeypatch.setattr(model.hf_model, "generate", lambda **kwargs: (
        out := real(**kwargs), lengths.append(out.shape[1] - kwargs["input_ids"].shape[1]))[0])

    def rerun(text):
        raise KeyboardInterrupt("the script was stopped")

    with pytest.raises(KeyboardInterrupt):
        model.view().chat(PAGES[0], [], "Read it.", on_text=rerun)
    model._submit(lambda: None).result()
    assert lengths[0] < 48


def test_out_of_memory_on_one_page_gives_the_pages_in_flight_one_sentence(runtime, monkeypatch):
    import torch

    model = load(runtime, "plain2")
    real = model.hf_model.generate
    calls = []

    def generate(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return real(**kwargs)

    monkeypatch.setattr(model.hf_model, "generate", generate)
    result = model.view().ocr([Page(n, image) for n, image in enumerate(PAGES[:3])])
    errors = [page.error for page in result.pages]
    ran_out = [e for e in errors if e and e.startswith("The GPU ran out of memory reading page ")]
    assert len(ran_out) == 1 and "Tiny plain2 was unloaded" in ran_out[0]  # two pages are in flight at once:
    for error in errors:  # the others were read, or told the model went — never a traceback's words
        assert error in (ran_out[0], None, "Tiny plain2 was unloaded before this page was read; load it again.")
    assert runtime.loader.current() is None
