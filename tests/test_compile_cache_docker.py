"""The compile cache outlives a model's container: the manager mounts vllm_cache_volume at
vLLM's cache root, so a later container of the same model finds what the first compiled.
The light stand-in server compiles the way vLLM does for this purpose (--compile-cache):
it loads the graph kept under /root/.cache/vllm or makes and keeps one."""

import uuid

import pytest

from managers.container_manager import SingleContainerManager
from models.config import load_config
from tests.containers import TEST_LABEL, fake_entry, remove_test_containers, volume_files, write_config

pytestmark = pytest.mark.docker


@pytest.fixture
def cache_volume(clean_docker):
    """An empty volume of its own, removed after the test."""
    name = f"chatvlmllm-test-vllm-cache-{uuid.uuid4().hex[:8]}"
    clean_docker.volumes.create(name, labels={TEST_LABEL: "pytest"})
    yield name
    remove_test_containers(clean_docker)  # the volume is removed only once no container uses it
    clean_docker.volumes.get(name).remove(force=True)


def test_a_second_container_of_the_model_loads_what_the_first_compiled(tmp_path, clean_docker, cache_volume):
    entry = fake_entry("cc", delay=0.3, extra_args=["--compile-cache"])
    config = load_config(write_config(tmp_path / "config.yaml", {"cc": entry}))
    config = config.model_copy(update={"vllm_cache_volume": cache_volume})
    manager = SingleContainerManager(config)
    name = entry["vllm"]["container_name"]

    manager.switch("cc")
    first = clean_docker.containers.get(name)
    assert "Compiled the graph, saved to /root/.cache/vllm/torch_compile_cache/cc" in first.logs().decode()
    manager.stop_all()
    remove_test_containers(clean_docker)  # the container, and all it held outside volumes, is gone

    manager.switch("cc")
    second = clean_docker.containers.get(name)
    assert second.id != first.id
    assert (f"Directly load the compiled graph from /root/.cache/vllm/torch_compile_cache/cc, "
            f"compiled in {first.id[:12]}") in second.logs().decode()
    # and it is on the named volume itself, where the next container of any run finds it
    kept = volume_files(clean_docker, cache_volume)["torch_compile_cache/cc"]
    assert kept.decode() == f"compiled in {first.id[:12]}"

