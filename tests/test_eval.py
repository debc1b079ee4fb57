"""Scoring models against true text: the metrics on hand-worked examples, an evaluation of
Tesseract and a stub server that answers the truth with edits chosen here (so its CER and
WER are known exactly), one switch per model, and ``cli.py eval`` end to end."""

import csv
import io
import threading

import pytest
import yaml
from PIL import Image

from managers.eval_report import COLUMNS
from managers.evaluation import Sample, evaluate, folder_samples
from managers.history import History
from managers.runs import Choice
from managers.runtime import Runtime
from models.config import load_config
from models.document import open_document
from models.errors import NotAvailable
from models.metrics import DiffOp, Score, score, score_result, split_pages, word_diff
from models.result import OCRResult, PageResult
from tests.conftest import ROOT
from tests.containers import cli, local_entry, write_config
from tests.fixtures.openai_stub import OpenAIStub, ink_lines
from tests.helpers import ENGLISH, MIXED, RUSSIAN, encode, pdf_of_images, render_lines

# --- the metrics ------------------------------------------------------------------------------


def test_substitution_counts_one_character_and_one_word():
    assert score("кот пёс", "кот пес") == Score(char_edits=1, chars=7, word_edits=1, words=2)


def test_composed_and_decomposed_letters_are_the_same():
    composed, decomposed = "\u0439", "\u0438\u0306"  # й, and и + combining breve
    assert score(f"мой {composed}од", f"мо{decomposed} {decomposed}од") == Score(0, 7, 0, 2)


def test_whitespace_is_folded_and_case_is_kept():
    assert score("Счёт  №5\n\nот\tмая\f", " Счёт №5 от мая") == Score(0, 14, 0, 4)
    assert score("Счёт", "счёт") == Score(1, 4, 1, 1)


def test_yo_and_ye_are_different_letters():
    reference = "Съешь же ещё этих булок"  # 23 characters, 5 words
    result = score(reference, "Съешь же еще этих булок")
    assert (result.cer, result.wer) == (1 / 23, 1 / 5)


def test_pages_are_micro_averaged_and_a_failed_page_is_all_errors():
    truth = ["abcdefghij", "a" * 40, "один два три"]  # 10, 40 and 12 characters; 1, 1 and 3 words
    result = OCRResult(model="m", engine="e", task="t", pages=[
        PageResult(index=0, text="abcdefghiX"),  # 1 substitution
        PageResult(index=1, text="a" * 32),  # 8 deletions
        PageResult(index=2, error="the server went away", text="один два три"),
    ])
    total = score_result(result, truth)
    assert total == Score(char_edits=1 + 8 + 12, chars=10 + 40 + 12, word_edits=1 + 1 + 3, words=1 + 1 + 3)
    assert total.cer == 21 / 62  # not the mean of the pages' rates, (0.1 + 0.2 + 1) / 3
    assert total.wer == 5 / 5


def test_pages_beyond_the_truth_are_not_scored():
    result = OCRResult(model="m", engine="e", task="t",
                       pages=[PageResult(index=1, text="два"), PageResult(index=2, text="лишнее")])
    assert score_result(result, ["один", "два"]) == Score(0, 3, 0, 1)  # page 0 not read, page 2 no truth
    assert score_result(result, None) is None
    assert score_result(result, ["один"]) is None


def test_an_empty_reference_is_right_only_when_nothing_was_read():
    assert (score("", " \n").cer, score("", "x").cer) == (0.0, 1.0)


def test_truth_is_split_at_form_feeds():
    assert split_pages("один\fдва\f") == ["один", "два"]
    assert split_pages("один\f\fтри\n") == ["один", "", "три\n"]
    assert split_pages("") == [""]


def test_word_diff():
    assert word_diff("the cat  sat on\nthe mat", "the bat sat the mat now") == [
        DiffOp("equal", ["the"], ["the"]),
        DiffOp("replace", ["cat"], ["bat"]),
        DiffOp("equal", ["sat"], ["sat"]),
        DiffOp("delete", ["on"], []),
        DiffOp("equal", ["the", "mat"], ["the", "mat"]),
        DiffOp("insert", [], ["now"]),
    ]


# --- an evaluation over rendered pages -------------------------------------------------------

GAP = ENGLISH + RUSSIAN[:2]  # the page the stub fails on: 26 + 12 = 38 words
MIXED_TRUTH = "\n".join(MIXED)  # 5 + 8 + 7 + 9 = 29 words
TWO_TRUTH = "\n".join(RUSSIAN) + "\f" + "\n".join(ENGLISH[:2])  # 5 + 7 + 6 = 18 words, then 8 + 9 = 17


def stub_answer(image: Image.Image) -> str:
    """The truth of the page the image shows (known by its number of lines), with edits."""
    lines = len(ink_lines(image))
    if lines == 4:  # mixed.png: 1 substitution (и → н) and "lazy " deleted: 6 characters, 2 words;
        # and "ещё" with a decomposed ё, which is no error at all
        return (MIXED_TRUTH.replace("оборудования", "оборудовання").replace("lazy ", "")
                .replace("ещё", "ещ\u0435\u0308"))
    if lines == 3:  # two.pdf page 1: ё written as е, 1 character and 1 word; line breaks as spaces
        return "  ".join(RUSSIAN).replace("ещё", "еще")
    if lines == 2:  # two.pdf page 2: "the " inserted, 4 characters and 1 word
        return "\n".join(ENGLISH[:2]).replace("of office", "of the office")
    if lines == 1:  # notes.png has no truth: whatever is read is not scored
        return "nothing like the page"
    raise RuntimeError("the stub fails on this page")  # gap.png: every reference character is an error


class QuietStub(OpenAIStub):
    def handle_error(self, request, client_address):
        pass  # the failure is the test's own


@pytest.fixture(scope="module")
def stub():
    server = QuietStub(answer=stub_answer)
    yield server
    server.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    (folder / "mixed.png").write_bytes(encode(render_lines(MIXED), "PNG"))
    (folder / "mixed.txt").write_text(MIXED_TRUTH, encoding="utf-8")
    (folder / "two.pdf").write_bytes(pdf_of_images([render_lines(RUSSIAN), render_lines(ENGLISH[:2])]))
    (folder / "two.txt").write_text(TWO_TRUTH + "\f\n", encoding="utf-8")
    (folder / "gap.png").write_bytes(encode(render_lines(GAP), "PNG"))
    (folder / "gap.txt").write_text("\n".join(GAP), encoding="utf-8")
    (folder / "notes.png").write_bytes(encode(render_lines(ENGLISH[2:]), "PNG"))  # no notes.txt
    (folder / "readme.md").write_text("not a document")
    return folder


@pytest.fixture
def config_path(tmp_path, stub):
    qwen = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]["qwen3_vl_2b"]
    qwen["vllm"] = {"endpoint": stub.url, "served_model_name": "stub"}
    return write_config(tmp_path / "stub.yaml", {"qwen3_vl_2b": qwen})


def length(lines: list[str]) -> int:
    return len(" ".join(lines))  # the lines with their breaks folded, as they are scored


MIXED_CHARS, TWO_CHARS = length(MIXED), length(RUSSIAN) + length(ENGLISH[:2])
GAP_CHARS = length(GAP)
STUB_TOTAL = Score(char_edits=6 + 1 + 4 + GAP_CHARS, chars=MIXED_CHARS + TWO_CHARS + GAP_CHARS,
                   word_edits=2 + 1 + 1 + 38, words=29 + 35 + 38)


def test_stub_and_tesseract_scores(folder, config_path):
    config = load_config(config_path)
    samples, errors = folder_samples(folder, config.limits)
    assert errors == [] and [s.name for s in samples] == ["gap.png", "mixed.png", "notes.png", "two.pdf"]
    assert samples[3].truth == ["\n".join(RUSSIAN), "\n".join(ENGLISH[:2])]  # the final form feed ends page 2
    evaluation = evaluate(Runtime(config), [Choice("tesseract"), Choice("qwen3_vl_2b", "vllm")], samples)
    tesseract, remote = evaluation.models
    assert tesseract.choice == Choice("tesseract", "cpu", "text")
    assert remote.choice == Choice("qwen3_vl_2b", "vllm", "text")

    rows = {row.sample.name: row for row in remote.rows}
    assert rows["mixed.png"].score == Score(6, MIXED_CHARS, 2, 29)
    assert rows["two.pdf"].score == Score(1 + 4, TWO_CHARS, 1 + 1, 35)
    assert rows["gap.png"].score == Score(GAP_CHARS, GAP_CHARS, 38, 38) and rows["gap.png"].failed == 1
    assert rows["notes.png"].score is None and rows["notes.png"].run.result.pages[0].text == "nothing like the page"
    assert remote.score == STUB_TOTAL  # notes.png left out of the micro average
    assert remote.score.cer == (11 + GAP_CHARS) / (MIXED_CHARS + TWO_CHARS + GAP_CHARS)
    assert remote.score.wer == 42 / 102
    assert (remote.pages, remote.failed) == (5, 1) and evaluation.failed

    assert tesseract.failed == 0 and tesseract.pages == 5
    assert tesseract.score.cer <= 0.02 and tesseract.score.words == 102
    assert [row.run.result.engine for row in tesseract.rows] == ["tesseract"] * 4


def test_missing_or_short_truth_is_said(folder, config_path):
    samples, _ = folder_samples(folder, load_config(config_path).limits)
    assert samples[2].note == "no truth: read and timed, not scored"
    assert samples[1].note is None
    assert Sample(samples[3].document, ["один"]).note == (
        "the truth has 1 page, the document 2: pages are matched in order, pages without truth are not scored")


def test_a_document_that_cannot_be_read_counts_every_page_as_failed(folder, config_path, monkeypatch):
    from managers import runs

    config = load_config(config_path)
    two = folder_samples(folder, config.limits)[0][3]

    def taken_away(*args, **kwargs):
        raise NotAvailable("Tesseract 5 was taken away.")

    monkeypatch.setattr(runs, "read_document", taken_away)
    (row,) = evaluate(Runtime(config), [Choice("tesseract")], [two]).models[0].rows
    assert (row.error, row.pages, row.failed) == ("Tesseract 5 was taken away.", 2, 2)
    assert row.score == Score(TWO_CHARS, TWO_CHARS, 35, 35)


def test_cancel_keeps_the_documents_read_in_full(folder, config_path):
    config = load_config(config_path)
    samples, _ = folder_samples(folder, config.limits)
    cancel = threading.Event()

    def on_read(choice, sample):
        if sample.name == "notes.png":
            cancel.set()

    evaluation = evaluate(Runtime(config), [Choice("qwen3_vl_2b", "vllm"), Choice("tesseract")], samples,
                          on_read=on_read, cancel=cancel)
    assert evaluation.cancelled and [m.choice.key for m in evaluation.models] == ["qwen3_vl_2b"]
    assert [row.sample.name for row in evaluation.models[0].rows] == ["gap.png", "mixed.png"]


@pytest.mark.local
def test_one_switch_per_model(tmp_path, tiny_dirs, monkeypatch, limits):
    from managers.model_loader import ModelLoader

    config = load_config(write_config(tmp_path / "c.yaml", {
        "tiny2": local_entry("tiny2", tiny_dirs["qwen2_vl"]),
        "tiny3": local_entry("tiny3", tiny_dirs["qwen3_vl"], factor=32)}))
    loads = []
    real = ModelLoader.load_model

    def counted(self, key, *args, **kwargs):
        loads.append(key)
        return real(self, key, *args, **kwargs)

    monkeypatch.setattr(ModelLoader, "load_model", counted)
    page = encode(render_lines(ENGLISH[:1], size=(600, 200)), "PNG")
    samples = [Sample(open_document(page, f"{n}.png", limits), [ENGLISH[0]]) for n in range(3)]
    runtime = Runtime(config)
    try:
        evaluation = evaluate(runtime, [Choice("tiny2", "local"), Choice("tiny3", "local")], samples)
    finally:
        runtime.close()
    assert loads == ["tiny2", "tiny3"]  # not once per document
    for model in evaluation.models:
        assert [row.run.result.engine for row in model.rows] == ["transformers"] * 3
        assert [row.run.result.model for row in model.rows] == [model.choice.key] * 3


# --- cli.py eval ------------------------------------------------------------------------------

def test_cli_eval_writes_the_csv_and_the_chart(folder, config_path, tmp_path):
    done = cli("--config", config_path, "eval", folder, "--models", "tesseract,qwen3_vl_2b:vllm",
               "--out", tmp_path / "out")
    assert done.returncode == 1, done.stderr  # gap.png failed with the stub
    assert "tesseract mixed.png [" in done.stderr and "qwen3_vl_2b two.pdf [" in done.stderr

    with open(tmp_path / "out" / "eval.csv", encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == COLUMNS
        rows = {(r["model"], r["document"]): r for r in reader}
    names = ["gap.png", "mixed.png", "notes.png", "two.pdf"]
    assert sorted(rows) == sorted((m, n) for m in ("tesseract", "qwen3_vl_2b") for n in names)
    mixed = rows["qwen3_vl_2b", "mixed.png"]
    assert (mixed["mode"], mixed["task"], mixed["pages"], mixed["failed_pages"]) == ("vllm", "text", "1", "0")
    assert float(mixed["cer"]) == 6 / MIXED_CHARS and float(mixed["wer"]) == 2 / 29
    two = rows["qwen3_vl_2b", "two.pdf"]
    assert (two["pages"], float(two["cer"]), float(two["wer"])) == ("2", 5 / TWO_CHARS, 2 / 35)
    gap = rows["qwen3_vl_2b", "gap.png"]
    assert (gap["failed_pages"], gap["cer"], gap["wer"]) == ("1", "1.0", "1.0")
    for model in ("tesseract", "qwen3_vl_2b"):
        notes = rows[model, "notes.png"]
        assert (notes["cer"], notes["wer"], notes["pages"]) == ("", "", "1")
        assert notes["note"] == "no truth: read and timed, not scored" and float(notes["seconds"]) > 0
    assert float(rows["tesseract", "mixed.png"]["cer"]) <= 0.02

    kept = History(load_config(config_path)).list()
    assert sorted((e.model, e.name) for e in kept) == sorted(rows)

    chart = Image.open(tmp_path / "out" / "eval.png")
    assert chart.format == "PNG" and chart.width > 0 and chart.height > 0

    tables = done.stdout.split("\n\n")
    assert tables[0].startswith("tesseract (CPU, text)\nDOCUMENT ")
    stub_table = tables[1].splitlines()
    assert stub_table[0] == "qwen3_vl_2b (vLLM, text)"
    total = stub_table[2].split()
    assert total[:4] == ["all", "documents", "5", "1"]
    assert total[6:8] == [f"{STUB_TOTAL.cer:.2%}", f"{STUB_TOTAL.wer:.2%}"]
    assert [line.split()[0] for line in stub_table[3:]] == names
    assert "no truth: read and timed, not scored" in stub_table[5]


def test_cli_eval_runs_the_others_when_a_model_cannot_be_made_ready(folder, tmp_path):
    done = cli("eval", folder, "--models", "qwen3_vl_2b:local,tesseract", "--out", tmp_path)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: qwen3_vl_2b (Local, text): The weights of Qwen/Qwen3-VL-2B-Instruct are "
                      "not on this machine — download them with: hf download Qwen/Qwen3-VL-2B-Instruct"]
    assert "qwen3_vl_2b (Local, text)\nnot evaluated" in done.stdout
    rows = list(csv.DictReader(io.StringIO((tmp_path / "eval.csv").read_text(encoding="utf-8"))))
    assert [(r["model"], r["pages"]) for r in rows] == (
        [("qwen3_vl_2b", "")] * 4 + [("tesseract", "1")] * 3 + [("tesseract", "2")])
    assert float(rows[5]["cer"]) <= 0.02


@pytest.mark.parametrize("models, expected", [
    ("tesseract,nope", "error: Unknown model 'nope'; known models: dots_ocr"),
    ("tesseract:gpu", "error: 'tesseract:gpu' is not KEY or KEY:MODE (MODE: vllm, local, cpu)."),
    ("tesseract,", "error: '' is not KEY or KEY:MODE"),
    ("tesseract:vllm", "error: Tesseract 5 has no vLLM backend; it runs in: CPU."),
])
def test_cli_eval_bad_models_is_one_line(folder, tmp_path, models, expected):
    done = cli("eval", folder, "--models", models, "--out", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(expected), done.stderr
    assert not (tmp_path / "eval.csv").exists()
