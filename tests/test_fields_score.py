"""Scoring a run's fields against a document's true fields (models/fields/score.py), and an
evaluation of the fields task (managers/evaluation.py, managers/eval_report.py)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from managers import eval_report, runs
from managers.evaluation import Sample, evaluate, folder_samples
from managers.runs import Choice, Run
from managers.runtime import Runtime
from models.config import load_config
from models.document import open_document
from models.errors import InputError
from models.fields.collect import collect
from models.fields.result import FoundValue
from models.fields.score import Counts, read_truth, score_fields, total
from models.result import OCRResult, PageResult
from tests.conftest import ROOT
from tests.helpers import encode, render_lines
from tests.test_fields import BIK, INN, KPP, settlement_account

ACCOUNT = settlement_account(BIK)


@pytest.fixture(scope="module")
def template():
    return load_config(ROOT / "config.yaml").template("tender_notice")


def read(template, *found: tuple[str, str, int]) -> OCRResult:
    values = [FoundValue(name=name, value=value, page=page) for name, value, page in found]
    return OCRResult(model="m", engine="e", task="fields", template="tender_notice",
                     fields=collect(template, values), pages=[PageResult(index=0), PageResult(index=1)])


def test_values_are_right_by_their_checked_form(template):
    result = read(template, ("initial_price", "1 250 000,00 руб.", 0), ("customer_inn", "7707 083 893", 0),
                  ("bid_deadline", "«20» декабря 2026 г.", 0), ("customer_name", "ГБУ  «Жилищник»", 0),
                  ("bik", BIK, 0), ("account", ACCOUNT, 0))
    truth = {"initial_price": "1250000,00", "customer_inn": INN, "bid_deadline": "20.12.2026",
             "customer_name": "гбу «жилищник»", "bik": BIK, "account": ACCOUNT}
    counts = score_fields(template, result, truth)
    for name in truth:
        assert counts[name] == Counts(documents=1, truths=1, given=1, right=1, exact=1), name


def test_a_value_that_does_not_check_is_compared_as_folded_text(template):
    # An account checked against a wrong BIK does not check; its digits are still the true ones.
    result = read(template, ("bik", "044525593", 0), ("account", ACCOUNT, 0), ("customer_inn", "7707083894", 0),
                  ("initial_price", "Сто рублей", 0))
    truth = {"bik": BIK, "account": ACCOUNT, "customer_inn": "7707083894", "initial_price": "сто  рублей"}
    counts = score_fields(template, result, truth)
    assert counts["account"].right == 1 and counts["bik"].right == 0
    assert counts["customer_inn"].right == 1  # invalid on both sides, and the same digits
    assert counts["initial_price"].right == 1


def test_precision_recall_and_exact_match(template):
    result = read(template, ("customer_inn", INN, 0),              # right
                  ("customer_kpp", "773601002", 0),                 # wrong
                  ("customer_ogrn", "1027700132195", 0),            # given where the truth has none
                  ("bik", BIK, 0), ("bik", "044525593", 1))         # a conflict: given, never right
    truth = {"customer_inn": INN, "customer_kpp": KPP, "bik": BIK, "subject": "Поставка бумаги",
             "contact_email": None, "notice_number": "  "}  # null and blank: the document does not show it
    counts = score_fields(template, result, truth)
    assert counts["customer_inn"] == Counts(1, 1, 1, 1, 1)
    assert counts["customer_kpp"] == Counts(1, 1, 1, 0, 0)
    assert counts["customer_ogrn"] == Counts(1, 0, 1, 0, 0)
    assert counts["bik"] == Counts(1, 1, 1, 0, 0)
    assert counts["subject"] == Counts(1, 1, 0, 0, 0)  # missed
    assert counts["contact_email"] == Counts(1, 0, 0, 0, 1)  # rightly left empty
    assert counts["customer_kpp"].precision == 0.0 and counts["subject"].precision is None
    assert counts["contact_email"].recall is None and counts["contact_email"].exact_match == 1.0
    every = total(counts)
    fields = len(template.fields)
    # exact: the INN, and every field neither given nor true
    assert every == Counts(documents=fields, truths=4, given=4, right=1, exact=1 + fields - 5)
    assert (every.precision, every.recall) == (1 / 4, 1 / 4)


def test_truth_files(tmp_path, template):
    path = tmp_path / "a.fields.json"
    assert read_truth(path, template) is None
    path.write_text(json.dumps({"customer_inn": INN, "contact_email": None, "subject": ""}), encoding="utf-8")
    assert read_truth(path, template) == {"customer_inn": INN}
    for data, expected in [
        ("{not json", "'a.fields.json' is not a JSON object in UTF-8 ("),
        ("[1, 2]", "'a.fields.json' must be one JSON object: {field: value as printed}."),
        ('{"inn": "1"}', "'a.fields.json' has fields the template does not: inn; its fields are: account, "
                         "bid_deadline"),
        ('{"customer_inn": 7707083893}', "'a.fields.json': the value of customer_inn must be text as printed"),
    ]:
        path.write_text(data, encoding="utf-8")
        with pytest.raises(InputError) as raised:
            read_truth(path, template)
        assert str(raised.value).startswith(expected)


def test_an_evaluation_tallies_fields_over_documents_and_writes_them(tmp_path, monkeypatch, config, template):
    """The orchestration with runs made here (collect() is real): what a model reads is given."""
    page = encode(render_lines(["x"], size=(200, 100)), "PNG")
    samples = [Sample(open_document(page, "a.png", config.limits), fields={"customer_inn": INN, "customer_kpp": KPP}),
               Sample(open_document(page, "b.png", config.limits), fields={"customer_inn": "7707083893"}),
               Sample(open_document(page, "c.png", config.limits))]  # no truth: read, not scored
    readings = iter([[("customer_inn", INN, 0), ("customer_kpp", "773601002", 0)],  # documents in order
                     [("customer_inn", "7707 083 893", 0)], []])

    def reading(runtime, choice, pages, **kwargs):
        return Run(choice, read(template, *next(readings)))

    monkeypatch.setattr(runs, "read_document", reading)
    evaluation = evaluate(Runtime(config), [Choice("tesseract", task="fields", template="tender_notice")], samples)
    (model,) = evaluation.models
    assert model.choice == Choice("tesseract", "cpu", "fields", template="tender_notice")
    assert [row.fields is None for row in model.rows] == [False, False, True]
    assert model.fields["customer_inn"] == Counts(documents=2, truths=2, given=2, right=2, exact=2)
    assert model.fields["customer_kpp"] == Counts(documents=2, truths=1, given=1, right=0, exact=1)
    assert [row.sample.note for row in model.rows][:2] == [None, None]

    written = eval_report.write(evaluation, tmp_path)
    assert [p.name for p in written] == ["eval.csv", "eval.png", "eval_fields.csv"]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "eval_fields.csv").read_text(encoding="utf-8"))))
    assert list(rows[0]) == eval_report.FIELDS_COLUMNS
    assert [r["field"] for r in rows] == ["*"] + [f.name for f in template.fields]
    inn = next(r for r in rows if r["field"] == "customer_inn")
    assert (inn["template"], inn["truths"], inn["given"], inn["right"], inn["precision"], inn["recall"],
            inn["exact_match"]) == ("tender_notice", "2", "2", "2", "1.0", "1.0", "1.0")
    subject = next(r for r in rows if r["field"] == "subject")
    assert (subject["precision"], subject["recall"], subject["exact_match"]) == ("", "", "1.0")
    assert rows[0]["right"] == "2" and rows[0]["given"] == "3" and rows[0]["truths"] == "3"


def test_folder_truths_are_read_for_the_fields_task(tmp_path, config, template):
    page = encode(render_lines(["x"], size=(200, 100)), "PNG")
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.png").write_bytes(page)
    (tmp_path / "a.fields.json").write_text(json.dumps({"customer_inn": INN}), encoding="utf-8")
    (tmp_path / "b.fields.json").write_text(json.dumps({"nope": "1"}), encoding="utf-8")
    samples, errors = folder_samples(tmp_path, config.limits, template=template)
    assert [(s.name, s.fields) for s in samples] == [("a.png", {"customer_inn": INN}), ("c.png", None)]
    assert [str(e).split(";")[0] for e in errors] == ["'b.fields.json' has fields the template does not: nope"]
    assert all(s.fields is None for s in folder_samples(tmp_path, config.limits)[0])  # the text task: not read
