"""The fields task through an OpenAI-compatible server: a stub answering what a remote server
without structured outputs may give. Structured outputs are asked for with the template's
schema; a server that refuses them is asked again without; every bad answer becomes one
sentence on its page or a field's status — the page is kept, and so are the others."""

import json

import pytest

from managers.runs import Choice, read_document
from managers.runtime import Runtime
from models.config import load_config
from models.document import Page
from models.fields import answer
from models.fields.template import (MAX_LIST_ITEMS, MAX_VALUE_CHARS, Template, TemplateField, answer_tokens,
                                    json_schema)
from tests.fixtures.openai_stub import OpenAIStub, ink_lines
from tests.helpers import ENGLISH, render_lines
from tests.test_openai_engine import stub_config

INVOICE = {"number": "17", "date": "15.01.2026", "supplier_name": "ООО «Ромашка»",
           "supplier_inn": "7707083893", "supplier_kpp": "773601001", "buyer_name": None,
           "bik": None, "account": None, "correspondent_account": None, "total": "1 250 000,00", "vat": None}
NOT_JSON = "I cannot read this invoice, sorry."


@pytest.fixture
def stub():
    server = OpenAIStub()
    yield server
    server.close()


def pages(n: int) -> list[Page]:
    """Page k has k + 1 lines: the stub tells the pages apart by the lines it sees."""
    return [Page(k, render_lines(ENGLISH[:1] * (k + 1))) for k in range(n)]


def answering(stub, *answers: str) -> None:
    stub.answer = lambda image: answers[len(ink_lines(image)) - 1]


def read(tmp_path, stub, n: int = 1, on_text=None, **requests):
    config = stub_config(tmp_path, stub.url, **requests)
    return read_document(Runtime(config), Choice("dots_ocr", task="fields", template="invoice"), pages(n),
                         on_text=on_text).result


def by_name(result) -> dict:
    return {f.name: f for f in result.fields}


def test_the_schema_is_asked_for_and_the_answer_gives_the_fields(tmp_path, stub):
    answering(stub, json.dumps(INVOICE, ensure_ascii=False))
    result = read(tmp_path, stub)
    sent = stub.requests[0]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {
        "name": "fields", "schema": json_schema(load_config().template("invoice")), "strict": True}}
    page = result.pages[0]
    assert page.error is None and page.warnings == []
    assert {v.name: v.value for v in page.fields} == {k: v for k, v in INVOICE.items() if v is not None}
    fields = by_name(result)
    assert len(result.fields) == len(INVOICE) and result.template == "invoice"
    assert fields["supplier_inn"].status == "valid" and fields["total"].normalized == "1250000.00"
    assert fields["buyer_name"].status == "missing"
    # The answer is shown as its JSON, pretty-printed, in one box over the page.
    assert [e.type for e in page.elements] == ["code"]
    assert page.text == json.dumps(INVOICE, ensure_ascii=False, indent=2)
    assert page.markdown.startswith("```\n{\n  \"number\": \"17\"")
    assert [b.bbox for b in page.blocks] == [(0, 0, page.width, page.height)]


def test_json_in_fences_and_prose_is_found(tmp_path, stub):
    answering(stub, "Here are the fields:\n```json\n" + json.dumps({"number": "17", "date": None}) +
              "\n```\nTell me if { you need more }.")
    result = read(tmp_path, stub)
    assert result.pages[0].warnings == []
    assert [(v.name, v.value) for v in result.pages[0].fields] == [("number", "17")]


def test_boxes_of_the_seen_image_land_on_the_page(tmp_path, stub):
    def boxed(image):
        w, h = image.size
        return json.dumps({"number": {"value": "17", "bbox": [0, 0, w // 2, h // 2]},
                           "date": {"value": "15.01.2026", "bbox": [5, 5, 1, 1]},  # corners swapped
                           "supplier_inn": {"value": "7707083893", "bbox": [1, 2, "x", 4]},
                           "supplier_kpp": {"value": "773601001", "bbox": [1, 2, 3]},
                           "buyer_name": {"value": None, "bbox": [0, 0, 10, 10]}})

    stub.answer = boxed
    result = read(tmp_path, stub)
    page = result.pages[0]
    seen = stub.requests[0]["messages"][0]["content"][0]["image_url"]["url"]
    assert seen and (page.width, page.height) == (1654, 2339)
    found = {v.name: v for v in page.fields}
    assert found["number"].value == "17"
    assert found["number"].bbox == pytest.approx((0, 0, 827, 1170), abs=30)  # half the page, whatever it was shrunk to
    assert [found[n].bbox for n in ("date", "supplier_inn", "supplier_kpp")] == [None, None, None]
    assert "buyer_name" not in found
    assert by_name(result)["number"].bbox == found["number"].bbox


def test_values_of_the_wrong_type_are_invalid_not_errors(tmp_path, stub):
    answering(stub, json.dumps({"number": 17, "supplier_name": True, "buyer_name": {"name": "X"},
                                "total": ["1", "2"], "supplier_inn": "7707083893"}))
    result = read(tmp_path, stub)
    assert result.pages[0].error is None
    fields = by_name(result)
    assert (fields["number"].status, fields["number"].value) == ("invalid", "17")
    assert fields["number"].reason == "the model answered a number, not the text as printed"
    assert fields["supplier_name"].reason == "the model answered true or false, not the text as printed"
    assert fields["buyer_name"].value == '{"name": "X"}'
    assert fields["buyer_name"].reason == "the model answered an object, not the text as printed"
    assert fields["total"].reason == "a list where one value was expected"
    assert fields["supplier_inn"].status == "valid"


def test_keys_not_in_the_template_are_dropped_and_counted(tmp_path, stub):
    answering(stub, json.dumps({"number": "17", "inn": "7707083893", "Сумма": "5"}, ensure_ascii=False))
    page = read(tmp_path, stub).pages[0]
    assert [v.name for v in page.fields] == ["number"]
    assert [w.render("en") for w in page.warnings] == [
        "2 keys that are not fields of the template were left out: inn, Сумма"]


def test_an_answer_without_json_keeps_its_page_and_the_others(tmp_path, stub):
    answering(stub, NOT_JSON, json.dumps(INVOICE, ensure_ascii=False))
    result = read(tmp_path, stub, n=2)
    bad, good = result.pages
    assert bad.error is None and bad.fields == [] and bad.text == NOT_JSON
    assert bad.warnings == ["The answer is not a JSON object of fields; no fields were read from this page."]
    assert good.warnings == [] and len(good.fields) == 6
    assert all(f.page == 1 for f in result.fields if f.status != "missing")


def test_an_answer_cut_at_max_tokens_is_one_sentence(tmp_path, stub):
    stub.finish = "length"
    answering(stub, '{"number": {"value": "17", "bbox": [1, 2, 3, 4]}, "date": "15.0')
    result = read(tmp_path, stub)
    tokens = stub_config(tmp_path, stub.url).requests_for("dots_ocr").max_tokens
    page = result.pages[0]
    assert page.error is None and page.fields == []  # the box's object inside is not the answer
    assert page.warnings == [f"The answer was cut at {tokens} tokens (requests.max_tokens) before its JSON ended; "
                             "no fields were read from this page."]
    assert {f.status for f in result.fields} == {"missing"}


@pytest.mark.parametrize("streamed", [False, True])
def test_a_server_that_refuses_the_schema_is_asked_without_it(tmp_path, stub, streamed):
    stub.refuses_schema = True
    answering(stub, json.dumps({"number": "17"}), json.dumps({"number": "17"}))
    seen = []
    result = read(tmp_path, stub, n=2, concurrency=1, on_text=(lambda i, text: seen.append(i)) if streamed else None)
    # Refused once; the second page is not offered the schema again.
    assert ["response_format" in r for r in stub.requests] == [True, False, False]
    assert all(r.get("stream", False) is streamed for r in stub.requests)
    for page in result.pages:
        assert page.error is None and [v.value for v in page.fields] == ["17"]
        assert page.warnings == ["The server refused structured outputs (response_format): this answer was not "
                                 "held to the template's JSON Schema."]
    assert by_name(result)["number"].status == "valid"
    assert set(seen) == ({0, 1} if streamed else set())


def test_a_streamed_fields_page_is_the_same_page_as_a_whole_answer(tmp_path, stub):
    stub.chunk_chars = 7
    answering(stub, json.dumps(INVOICE, ensure_ascii=False))
    whole = read(tmp_path, stub)
    seen = []
    streamed = read(tmp_path, stub, on_text=lambda i, text: seen.append(text))
    assert stub.requests[1]["stream"] is True and stub.requests[1]["response_format"]["type"] == "json_schema"
    assert len(seen) > 3 and seen[-1] == json.dumps(INVOICE, ensure_ascii=False)
    assert streamed.pages[0].model_dump(exclude={"seconds"}) == whole.pages[0].model_dump(exclude={"seconds"})
    assert streamed.fields == whole.fields


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "{" * 5000, '{"number": ' + '1' * 5000 + '}', "null"])
def test_what_holds_no_object_gives_no_values(text):
    template = load_config().template("invoice")
    read = answer.read(text, template, 0, (100, 100), (200, 200))
    assert read.data is None and read.values == []


def test_the_token_bound_holds_the_longest_answer_the_schema_allows():
    """Every string at its bound in escapes, every list full: one byte a token, plus the end."""
    template = Template(label="T", fields=[
        TemplateField(name="inn", label="ИНН", type="verbatim", check="inn"),
        TemplateField(name="kind", label="Вид", type="enum", values=["Электронный аукцион", "Конкурс"]),
        TemplateField(name="lots", label="Лоты", type="list"),
        TemplateField(name="yes", label="Да", type="enum", values=["y"])])  # shorter than null
    longest = {f.name: (max(f.values, key=len) if f.type == "enum"
                        else ["\x00" * MAX_VALUE_CHARS] * MAX_LIST_ITEMS if f.type == "list"
                        else "\x00" * MAX_VALUE_CHARS) for f in template.fields}
    longest["yes"] = None
    assert answer_tokens(template) == len(json.dumps(longest).encode()) + 1
