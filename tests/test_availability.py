import pytest

from managers.availability import HostFacts, default_choice, probe_host, vram_warning, why_not
from managers.docker_host import docker_error
from managers.runs import make_engine
from managers.runtime import Runtime
from managers.gpu import GPU, GPUProbe
from models.errors import NotAvailable

NO_GPU = GPUProbe((), "no NVIDIA GPU found (no NVIDIA driver answers)")
ONE_GPU = GPUProbe((GPU(0, "RTX 5070 Ti", 12.0, 11.2),))
LANGS = frozenset({"eng", "rus", "osd"})


def host(docker="Docker engine not reachable at unix:///var/run/docker.sock — start Docker", gpu=NO_GPU, langs=LANGS):
    return HostFacts(docker, gpu, langs)


def test_laptop_without_docker_or_gpu_opens_on_tesseract(config):
    laptop = host()
    assert default_choice(config, laptop) == ("cpu", "tesseract")
    assert why_not(config.models["tesseract"], "cpu", laptop, config) is None
    assert why_not(config.models["qwen3_vl_2b"], "vllm", laptop, config).startswith("Docker engine not reachable")


def test_gpu_entry_on_a_docker_host_without_gpu(config):
    reason = why_not(config.models["qwen3_vl_2b"], "vllm", host(docker=None), config)
    assert reason.startswith("no NVIDIA GPU found")


def test_entry_without_gpu_request_is_not_blocked_by_a_missing_gpu(config):
    model = config.models["qwen2_vl_2b"]
    cpu_build = model.model_copy(update={"vllm": model.vllm.model_copy(update={"gpu": False})})
    reason = why_not(cpu_build, "vllm", host(docker=None), config)
    assert reason is None or "not available yet" in reason


def test_model_over_the_usable_budget(config):
    big = config.models["dots_ocr"].model_copy(update={"vram_gb": 11.5})
    assert "dots.ocr needs 11.5 GB of VRAM, over the 10 GB usable" in why_not(big, "vllm", host(docker=None, gpu=ONE_GPU), config)
    assert vram_warning(config.models["dots_ocr"], config) is None
    assert "above the recommended 8 GB" in vram_warning(big.model_copy(update={"vram_gb": 9.0}), config)


def test_tesseract_missing_or_without_russian(config):
    tess = config.models["tesseract"]
    assert "Tesseract is not installed — install it with: sudo apt-get install" in why_not(tess, "cpu", host(langs=None), config)
    assert why_not(tess, "cpu", host(langs=frozenset({"eng"})), config) == (
        "Tesseract lacks rus — install: sudo apt-get install tesseract-ocr-rus")
    assert default_choice(config, host(langs=None)) == ("cpu", "tesseract")


def test_local_mode_needs_transformers_and_weights(config):
    qwen = config.models["qwen3_vl_2b"]
    no_torch = HostFacts(None, NO_GPU, LANGS, transformers=False)
    assert why_not(qwen, "local", no_torch, config) == (
        "local mode needs PyTorch and Transformers — install them with: scripts/install.sh --local")
    assert why_not(qwen, "local", HostFacts(None, NO_GPU, LANGS), config) == (
        "the weights are not on this machine — download them with: hf download Qwen/Qwen3-VL-2B-Instruct")
    present = HostFacts(None, NO_GPU, LANGS, local_weights=frozenset({("Qwen/Qwen3-VL-2B-Instruct", None)}))
    assert why_not(qwen, "local", present, config) is None


def test_mode_without_backend(config):
    assert why_not(config.models["tesseract"], "vllm", host(), config) == "Tesseract 5 has no vLLM backend"
    with pytest.raises(NotAvailable, match="Tesseract 5 has no vLLM backend; it runs in: CPU"):
        make_engine(Runtime(config), "tesseract", "vllm")


def test_modes_that_cannot_run_say_so_and_never_crash(runtime):
    from managers import runs
    from models.errors import SwitchError

    with pytest.raises(NotAvailable, match="The weights of Qwen/Qwen3-VL-2B-Instruct are not on this machine "
                                           "— download them with: hf download Qwen/Qwen3-VL-2B-Instruct"):
        runs.read_document(runtime, runs.Choice("qwen3_vl_2b", "local"), [])
    with pytest.raises(NotAvailable, match="Qwen3-VL 2B Instruct is not loaded — load it first"):
        make_engine(runtime, "qwen3_vl_2b", "local")
    with pytest.raises(SwitchError, match="Qwen3-VL 2B Instruct is not the active model .*; start it again"):
        with runtime.arbiter.lease("vllm", "qwen3_vl_2b", 1):
            pass
    assert make_engine(runtime, "tesseract").engine_name == "tesseract"


def test_dead_docker_socket_is_one_sentence(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert docker_error() == ("Docker engine not reachable at unix:///nonexistent/docker.sock "
                              "— start Docker (e.g. sudo systemctl start docker)")


def test_real_probe_of_this_machine(config, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    facts = probe_host(config)
    assert facts.docker_error.startswith("Docker engine not reachable")
    assert {"eng", "rus"} <= facts.tesseract_languages
    assert facts.gpu.gpus or facts.gpu.error.startswith("no NVIDIA GPU found")
