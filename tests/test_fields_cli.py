"""``cli.py ocr --task fields`` (many documents → one sheet) and ``cli.py eval --task fields``,
run as a person runs them: a real subprocess, real Tesseract, pages rendered here."""

from __future__ import annotations

import csv
import io
import json

import pytest
from openpyxl import load_workbook
from PIL import Image

from managers.eval_report import FIELDS_COLUMNS
from managers.history import History
from models.config import load_config
from models.fields.sheet import sheet_bytes
from tests.conftest import ROOT
from tests.helpers import encode, pdf_of_images, render_lines
from tests.test_cli import cli
from tests.test_fields import INN, KPP

TEMPLATE = ["--task", "fields", "--template", "tender_notice"]
NOTICE = [
    "Извещение о проведении электронного аукциона № 0373200001226000123",
    "Заказчик: ГБУ «Жилищник района Арбат»",
    f"ИНН {INN}   КПП {KPP}",
    "Начальная (максимальная) цена контракта: 1 250 000,00 руб.",
    "Дата и время окончания срока подачи заявок: 20.12.2026 10:00",
]
TRUTH = {"notice_number": "0373200001226000123", "customer_name": "ГБУ «Жилищник района Арбат»",
         "customer_inn": INN, "customer_kpp": KPP, "initial_price": "1 250 000,00 руб.", "bid_deadline": "20.12.2026 10:00"}
STATUSES = ("valid", "invalid", "missing", "conflict")


def page(lines: list[str]) -> Image.Image:
    return render_lines(lines, font_size=32, gap=70)


@pytest.fixture(scope="module")
def notices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notices")
    (folder / "a.png").write_bytes(encode(page(NOTICE), "PNG"))
    (folder / "b.pdf").write_bytes(pdf_of_images([page(NOTICE[:3]), page(NOTICE[3:])]))
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_many_documents_make_one_workbook_and_a_bad_one_is_said(notices, tmp_path):
    done = cli("ocr", notices / "a.png", notices / "empty.png", notices / "b.pdf", "--model", "tesseract",
               *TEMPLATE, "--format", "xlsx", "--out", tmp_path / "out")
    assert done.returncode == 1
    assert "error: 'empty.png' is empty (0 bytes); choose the file again." in done.stderr
    assert f"wrote {tmp_path / 'out' / 'fields.xlsx'}" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fields.xlsx"]  # one sheet, no file per document

    sheet = load_workbook(tmp_path / "out" / "fields.xlsx").active
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    header = rows[0]
    assert header[0] == "Document" and [row[0] for row in rows[1:]] == ["a.png", "b.pdf"]
    # Tesseract's rules read NOTICE's values on both documents: on b.pdf the INN and KPP are
    # on page 1, the sum and the deadline on page 2. Identifiers stay text.
    for row in rows[1:]:
        cell = dict(zip(header, row))
        assert (cell["Customer's INN"], cell["Customer's INN: check"]) == (INN, "valid")
        assert (cell["Customer's KPP"], cell["Customer's KPP: check"]) == (KPP, "valid")
        assert cell["Initial maximum price (НМЦК)"] == "1 250 000,00 руб."
        assert cell["Initial maximum price (НМЦК): check"] == "valid"
        assert cell["Deadline for bids: check"] == "valid"
        assert str(cell["Subject of the purchase: check"]).startswith("missing: ")
    # Both documents were read to the end and kept, each as its own run with its fields.
    kept = History(load_config(ROOT / "config.yaml")).list()
    assert sorted((e.name, e.task) for e in kept) == [("a.png", "fields"), ("b.pdf", "fields")]


def test_files_of_one_name_from_two_folders_are_two_rows_named_apart(notices, tmp_path):
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notice.png").write_bytes((notices / "a.png").read_bytes())
    done = cli("ocr", tmp_path / "d1" / "notice.png", tmp_path / "d2" / "notice.png", "--model", "tesseract",
               *TEMPLATE, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in csv.reader(io.StringIO(done.stdout))] == ["Document", "notice.png", "notice (2).png"]


def test_a_kept_fields_run_is_exported_again_as_its_sheet_with_its_corrections(notices, tmp_path):
    assert cli("ocr", notices / "a.png", "--model", "tesseract", *TEMPLATE).returncode == 0
    history = History(load_config(ROOT / "config.yaml"))
    run_id = history.list()[0].id
    history.correct_fields(run_id, {"customer_kpp": "773601002"})
    done = cli("history", "--export", run_id, "--format", "xlsx", "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"wrote {tmp_path / 'fields.xlsx'}\n"
    rows = [[cell.value for cell in row] for row in load_workbook(tmp_path / "fields.xlsx").active.iter_rows()]
    cell = dict(zip(rows[0], rows[1]))
    assert (cell["Document"], cell["Customer's INN"], cell["Customer's KPP"]) == ("a.png", INN, "773601002")
    assert cell["Customer's KPP: check"] == f"valid; corrected by hand, read as: {KPP}"
    done = cli("history", "--export", run_id, "--format", "csv")  # a CSV or JSON sheet goes to stdout
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in csv.reader(io.StringIO(done.stdout))] == ["Document", "a.png"]
    (record,) = json.loads(cli("history", "--export", run_id, "--format", "json").stdout)
    assert (record["fields"]["customer_kpp"]["value"], record["fields"]["customer_kpp"]["original"]) == (
        "773601002", KPP)


def test_the_sheet_is_written_once_and_an_interrupt_keeps_the_rows_read(notices, tmp_path, monkeypatch):
    """In this process, so that reading can be interrupted after the first document: the
    sheet is not rewritten after every document, yet Ctrl-C keeps the rows read."""
    import cli as command
    from managers import runs

    made, reads, read = [], [], runs.read_document

    def counted(*args, **kwargs):
        made.append(1)
        return sheet_bytes(*args, **kwargs)

    def interrupted_at_the_third(*args, **kwargs):
        reads.append(1)
        if len(reads) == 3:
            raise KeyboardInterrupt
        return read(*args, **kwargs)

    monkeypatch.setattr(command.sheet, "sheet_bytes", counted)
    files = [str(notices / "a.png"), str(notices / "b.pdf"), str(notices / "a.png")]
    args = ["--model", "tesseract", *TEMPLATE, "--format", "xlsx", "--out"]
    assert command.main(["ocr", *files, *args, str(tmp_path / "all")]) == 0
    assert len(made) == 1
    monkeypatch.setattr(runs, "read_document", interrupted_at_the_third)
    assert command.main(["ocr", *files, *args, str(tmp_path / "cut")]) == 130
    rows = list(load_workbook(tmp_path / "cut" / "fields.xlsx").active.iter_rows(values_only=True))
    assert [row[0] for row in rows[1:]] == ["a.png", "b.pdf"]


def test_csv_and_json_sheets_go_to_stdout(notices):
    done = cli("ocr", notices / "a.png", notices / "b.pdf", "--model", "tesseract", *TEMPLATE, "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert not done.stdout.startswith("\ufeff")  # the byte-order mark is for a file Excel opens
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert [row[0] for row in rows] == ["Document", "a.png", "b.pdf"]
    assert rows[0][-1] == "Pages not read" and len({len(row) for row in rows}) == 1

    done = cli("ocr", notices / "a.png", "--model", "tesseract", *TEMPLATE, "--format", "json", "--lang", "ru")
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout)
    assert record["document"] == "a.png" and record["template"] == "tender_notice"
    template = load_config(ROOT / "config.yaml").template("tender_notice")
    assert list(record["fields"]) == [f.name for f in template.fields]
    assert {f["status"] for f in record["fields"].values()} <= set(STATUSES)


def test_text_output_lists_the_fields_before_the_text(notices):
    done = cli("ocr", notices / "a.png", "--model", "tesseract", *TEMPLATE, "--format", "md")
    assert done.returncode == 0, done.stderr
    heading, table, *text = done.stdout.split("\n\n")
    assert heading == "# Tender notice" and table.startswith("| Field | Value | Check |\n| --- | --- | --- |\n")
    rows = table.splitlines()[2:]
    assert len(rows) == 14
    assert [c.strip() for c in rows[2].split("|")[1:4]] == ["Customer's INN", INN, "valid"]
    text = "\n\n".join(text)
    assert INN in text and "Начальная (максимальная) цена контракта" in text  # the page's text, as without fields


@pytest.mark.parametrize("args, expected", [
    (["--task", "fields"], "error: --task fields needs --template T; the templates are: tender_notice, invoice, "
                           "contract, act."),
    (["--task", "fields", "--template", "nope"], "error: Unknown template 'nope'; the templates are: "
                                                 "tender_notice, invoice, contract, act."),
    (["--template", "tender_notice"], "error: --template is for --task fields only."),
    ([*TEMPLATE, "--format", "xlsx"], "error: xlsx is a binary format: give --out DIR."),
])
def test_bad_fields_usage_is_one_line(notices, args, expected):
    done = cli("ocr", notices / "a.png", "--model", "tesseract", *args)
    assert done.returncode == 2
    assert done.stderr.strip() == expected


@pytest.fixture(scope="module")
def truths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("truths")
    (folder / "a.png").write_bytes(encode(page(NOTICE), "PNG"))
    (folder / "a.fields.json").write_text(json.dumps(TRUTH, ensure_ascii=False), encoding="utf-8")
    (folder / "b.pdf").write_bytes(pdf_of_images([page(NOTICE[:3]), page(NOTICE[3:])]))
    (folder / "b.fields.json").write_text(json.dumps({**TRUTH, "customer_kpp": None}, ensure_ascii=False),
                                          encoding="utf-8")
    (folder / "c.png").write_bytes(encode(page(NOTICE[:1]), "PNG"))  # no truth: read, not scored
    return folder


def test_cli_eval_scores_fields_per_field(truths, tmp_path):
    out = tmp_path / "out"
    done = cli("eval", truths, "--models", "tesseract", *TEMPLATE, "--out", out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["eval.csv", "eval.png", "eval_fields.csv"]
    with open(out / "eval_fields.csv", encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == FIELDS_COLUMNS
        rows = {r["field"]: r for r in reader}
    template = load_config(ROOT / "config.yaml").template("tender_notice")
    assert list(rows) == ["*"] + [f.name for f in template.fields]
    for name, row in rows.items():
        assert (row["model"], row["mode"], row["task"], row["template"]) == ("tesseract", "cpu", "fields",
                                                                             "tender_notice")
        documents, truths_, given, right, exact = (int(row[k]) for k in ("documents", "truths", "given", "right",
                                                                          "exact"))
        assert documents == (2 * len(template.fields) if name == "*" else 2)  # c.png has no truth
        assert right <= given and right <= truths_ and exact <= documents
        assert row["recall"] == ("" if not truths_ else str(right / truths_))
        assert row["precision"] == ("" if not given else str(right / given))
        assert float(row["exact_match"]) == exact / documents
    assert int(rows["customer_inn"]["truths"]) == 2 and int(rows["customer_kpp"]["truths"]) == 1
    for name in ("customer_inn", "initial_price", "bid_deadline"):  # Tesseract's rules read them right
        assert (rows[name]["right"], rows[name]["precision"], rows[name]["recall"]) == ("2", "1.0", "1.0"), name
    # b.pdf's truth says it has no KPP, so the KPP Tesseract reads there is given but not right.
    assert (rows["customer_kpp"]["given"], rows["customer_kpp"]["right"]) == ("2", "1")
    assert int(rows["customer_ogrn"]["truths"]) == 0 and int(rows["*"]["truths"]) == 2 * len(TRUTH) - 1
    # A field neither document shows and the model did not give is an exact match.
    assert all(int(rows[name]["exact"]) == 2 for name in ("customer_ogrn", "account")
               if int(rows[name]["given"]) == 0)

    assert "FIELD" in done.stdout and "all fields" in done.stdout and "customer_inn" in done.stdout
    chart = Image.open(out / "eval.png")
    assert chart.format == "PNG"
    kept = History(load_config(ROOT / "config.yaml")).list()
    assert sorted(e.name for e in kept) == ["a.png", "b.pdf", "c.png"]


def test_cli_eval_fields_needs_a_template_and_good_truths(truths, tmp_path):
    done = cli("eval", truths, "--models", "tesseract", "--task", "fields", "--out", tmp_path)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: --task fields needs --template T")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(encode(page(NOTICE[:1]), "PNG"))
    (bad / "a.fields.json").write_text('{"inn": "1"}', encoding="utf-8")
    done = cli("eval", bad, "--models", "tesseract", *TEMPLATE, "--out", tmp_path)
    assert done.returncode == 2
    assert "error: 'a.fields.json' has fields the template does not: inn; its fields are:" in done.stderr
