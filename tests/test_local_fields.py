"""The fields task in local mode: tiny random-weight models held to the template's JSON Schema
by xgrammar's logits processor give schema-valid JSON for every page of a document — in
batches and one by one, compiled over a static cache and plain. The weights are redrawn wider
(``diverse``) so the pages' answers differ and a batch row held to another row's matcher
would show."""

import json

import jsonschema
import pytest
import yaml

from managers.engines import local
from managers.runs import Choice, read_document
from models.config import fields_task, load_config
from models.document import Page
from models.fields.template import Template, answer_tokens
from tests.containers import local_entry, write_config
from tests.test_local_decoding import PAGES, CountingBackend, diverse

pytestmark = pytest.mark.local

# Short values keep the random model's answers short: a string and an enum.
TEMPLATE = {"label": {"en": "Test", "ru": "Тест"}, "fields": [
    {"name": "number", "label": "Номер", "type": "verbatim"},
    {"name": "kind", "label": "Вид", "type": "enum", "values": ["счёт", "акт"]}]}


@pytest.fixture
def config(tmp_path, tiny_dirs, monkeypatch):
    # Room for the longest answer the schema allows: no page is cut, whatever the model writes.
    tokens = answer_tokens(Template.model_validate(TEMPLATE))

    def entry(name, family="qwen2_vl", **settings):
        found = local_entry(name, tiny_dirs[family], factor=28 if family == "qwen2_vl" else 32, **settings)
        return {**found, "requests": {"max_tokens": tokens}}

    path = write_config(tmp_path / "c.yaml", {
        "plain2": entry("plain2", batch_pages=1),
        "batch2": entry("batch2", batch_pages=3),
        "batch3": entry("batch3", "qwen3_vl", batch_pages=3),
        "compiled2": entry("compiled2", batch_pages=3, compile=True),
    })
    data = yaml.safe_load(path.read_text())
    data["templates"]["test"] = TEMPLATE
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(path))
    return load_config(path)


def read_fields(runtime, monkeypatch, key: str) -> tuple[list[str], object]:
    """A 3-page document read with the fields task: every page's raw answer, and the run."""
    raw: dict[int, str] = {}
    parse = local.page_from_answer

    def kept(answer, cut, request, *args):
        raw[request.index] = answer
        assert not cut, f"page {request.index + 1} was cut at max_tokens"
        return parse(answer, cut, request, *args)

    monkeypatch.setattr(local, "page_from_answer", kept)
    pages = [Page(n, image) for n, image in enumerate(PAGES[1:4])]
    run = read_document(runtime, Choice(key, mode="local", task="fields", template="test"), pages)
    return [raw[n] for n in range(3)], run.result


def schema_valid(runtime, answers: list[str]) -> None:
    schema = fields_task("test", runtime.config.template("test")).json_schema
    for answer in answers:
        # strict=False: xgrammar's string with maxLength lets control characters through.
        jsonschema.validate(json.loads(answer, strict=False), schema)


@pytest.mark.parametrize("key", ["plain2", "batch2", "batch3", "compiled2"])
def test_every_page_answers_schema_valid_json(runtime, monkeypatch, key):
    backend = CountingBackend()
    monkeypatch.setattr(local, "COMPILE_BACKEND", backend)
    model = runtime.loader.load_model(key)
    assert model.batch_size == (1 if key == "plain2" else 3) and model.compiled == (key == "compiled2")
    diverse(model)
    calls = backend.calls
    answers, result = read_fields(runtime, monkeypatch, key)
    schema_valid(runtime, answers)
    assert len(set(answers)) == 3, answers  # the pages' answers differ: each row had its own matcher
    assert [p.error for p in result.pages] == [None] * 3 and all(p.warnings == [] for p in result.pages)
    assert [f.name for f in result.fields] == ["number", "kind"]
    if key == "compiled2":
        assert backend.calls > calls and backend.compiled == 2  # decoded compiled, nothing compiled anew


def test_a_batch_holds_each_row_to_the_schema_as_alone(runtime, monkeypatch):
    """Under greedy decoding a page's constrained answer is the same in a batch as alone."""
    model = runtime.loader.load_model("batch2")
    diverse(model)
    batched, _ = read_fields(runtime, monkeypatch, "batch2")
    model.batch_size = 1
    alone, _ = read_fields(runtime, monkeypatch, "batch2")
    schema_valid(runtime, batched)
    assert batched == alone


def test_a_streamed_page_is_held_to_the_schema_as_a_whole_one(runtime):
    model = runtime.loader.load_model("plain2")
    diverse(model)
    page = Page(0, PAGES[2])
    choice = Choice("plain2", mode="local", task="fields", template="test")
    whole = read_document(runtime, choice, [page]).result.pages[0]
    seen = []
    streamed = read_document(runtime, choice, [page], on_text=lambda index, text: seen.append(text)).result.pages[0]
    assert streamed.model_dump(exclude={"seconds"}) == whole.model_dump(exclude={"seconds"})
    assert len(seen) > 1 and whole.fields and whole.warnings == []
    schema_valid(runtime, [seen[-1]])
