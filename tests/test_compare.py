"""The Compare and Evaluate views in AppTest, with two real engines: Tesseract, and a stub
OpenAI-compatible server that answers the true text with edits chosen in tests/test_eval.py,
so the stub side's CER and WER are known by hand."""

from html import escape

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from managers.comparison import align_truth
from managers.history import History
from models.config import load_config
from models.metrics import word_diff
from tests.conftest import ROOT
from tests.helpers import ENGLISH, MIXED, encode, render_lines
from tests.test_eval import MIXED_CHARS, MIXED_TRUTH
from tests.test_eval import config_path, stub  # noqa: F401 — fixtures this module uses
from views import diff

QWEN_AND_TESSERACT = ["Qwen3-VL 2B Instruct · vLLM · Plain text", "Tesseract 5 · CPU · Text with line boxes"]


@pytest.fixture(autouse=True)
def app_config(config_path, monkeypatch):
    st.cache_resource.clear()
    monkeypatch.setenv("CHATVLMLLM_CONFIG", str(config_path))
    yield config_path
    st.cache_resource.clear()


def compare_view() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="view").set_value("compare").run()
    at.selectbox(key="cmp0_mode").set_value("vllm").run()
    at.selectbox(key="cmp0_model_vllm").set_value("qwen3_vl_2b").run()
    at.selectbox(key="cmp1_mode").set_value("cpu").run()
    assert not at.exception
    return at


def side_html(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if 'class="diff-text"' in m.value]


def test_compare_reads_with_both_and_scores_against_the_truth(app_config):
    at = compare_view()
    at.file_uploader(key="cmp_upload").upload("mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    at.run()
    at.text_area(key="cmp_truth").input(MIXED_TRUTH).run()
    at.button(key="cmp_run").click().run()
    assert not at.exception and not at.error

    table = at.dataframe[0].value
    assert list(table["model"]) == QWEN_AND_TESSERACT
    # The stub substitutes one letter and deletes "lazy ": 6 characters, 2 of 29 words.
    assert table["CER"][0] == f"{6 / MIXED_CHARS:.2%}" and table["WER"][0] == f"{2 / 29:.2%}"
    assert table["CER"][1] != "-"  # Tesseract is scored too (its reading varies with the build)
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Page 1 read in") and c.endswith(f" · CER {6 / MIXED_CHARS:.1%} · WER {2 / 29:.1%}")
               for c in captions)

    # Against the other reading: the stub's substituted word is amber on its side, with the
    # other side's word in the tooltip, and the word it dropped is green on Tesseract's side.
    first, second = side_html(at)
    assert f'title="{escape("оборудования")}">оборудовання</span>' in first
    assert '<span class="diff-insert" style="background:#c8f7c5">lazy</span> dog' in second

    at.radio(key="cmp_against").set_value("truth").run()
    first, _ = side_html(at)
    assert '<span class="diff-missing" style="color:#b42318;text-decoration:line-through">lazy</span> dog' in first
    assert f'title="{escape("оборудования")}">оборудовання</span>' in first
    assert len(at.image) == 2  # both layouts on the page

    kept = History(load_config(app_config)).list()
    assert sorted(e.model for e in kept) == ["qwen3_vl_2b", "tesseract"]
    offered = {b.proto.label for b in at.get("download_button")}
    assert offered == {"Download .txt"}


def test_truth_for_a_page_range_is_matched_in_order():
    truth, note = align_truth(["only page two"], page_count=3, indexes=[1])
    assert truth == [None, "only page two", None] and note is None
    truth, note = align_truth(["a", "b", "c"], page_count=3, indexes=[1])
    assert truth == ["a", "b", "c"] and note is None
    truth, note = align_truth(["a", "b"], page_count=5, indexes=[1, 2, 3])
    assert truth == [None, "a", "b", None, None]
    assert note == ("The true text has 2 pages and 3 pages are read: they are matched in order, "
                    "and pages without true text are not scored.")


def test_diff_marks_each_kind_of_edit():
    ops = word_diff("a b c d", "a x c d e")
    assert diff.between_readings(ops, "left") == 'a <span class="diff-replace" style="background:#ffe8a3" title="x">b</span> c d'
    assert diff.between_readings(ops, "right") == ('a <span class="diff-replace" style="background:#ffe8a3" title="b">x</span>'
                                                  ' c d <span class="diff-insert" style="background:#c8f7c5">e</span>')
    ops = word_diff("a b <c>", "a <c>")
    assert diff.against_truth(ops) == 'a <span class="diff-missing" style="color:#b42318;text-decoration:line-through">b</span> &lt;c&gt;'


def test_evaluate_view_scores_every_model_and_draws_the_chart(app_config):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="view").set_value("evaluate").run()
    models = at.multiselect(key="eval_models")
    models.set_value(["qwen3_vl_2b:vllm", "tesseract:cpu"]).run()
    uploader = at.file_uploader(key="eval_uploads")
    uploader.upload("mixed.png", encode(render_lines(MIXED), "PNG"), "image/png")
    uploader.upload("mixed.txt", MIXED_TRUTH.encode(), "text/plain")
    uploader.upload("notes.png", encode(render_lines(ENGLISH[2:]), "PNG"), "image/png")
    at.run()
    assert "2 documents, 1 with true text; without (read and timed, not scored): notes.png." in [
        c.value for c in at.caption]
    at.button(key="eval_run").click().run()
    assert not at.exception and not at.error
    overall, per_document = at.dataframe[0].value, at.dataframe[1].value
    assert list(overall["model"]) == QWEN_AND_TESSERACT
    assert overall["CER"][0] == f"{6 / MIXED_CHARS:.2%}"
    assert list(per_document["document"]) == ["mixed.png", "notes.png"] * 2
    assert per_document["CER"][1] == "-"
    assert len(at.image) == 1  # the chart
    assert {b.proto.label for b in at.get("download_button")} == {"Table .csv", "Chart .png"}


def one_side_only():
    """The Compare result view where the second model could not be made ready: the first
    side's text must still show, and only one run is said to be kept."""
    import streamlit as st

    from managers.evaluation import Evaluation, ModelResult, Row, Sample
    from managers.runs import Choice, Run
    from models.config import load_config
    from models.document import open_document
    from models.errors import NotAvailable
    from models.i18n import _
    from models.result import OCRResult, PageResult
    from tests.helpers import MIXED, encode, render_lines
    from views.compare import show_comparison

    st.session_state["language"] = st.query_params.get("lang", "en")
    config = load_config()
    document = open_document(encode(render_lines(MIXED[:1]), "PNG"), "one.png", config.limits)
    sample = Sample(document)
    first = Choice("tesseract", "cpu", "text")
    result = OCRResult(model="tesseract", engine="tesseract", task="text",
                       pages=[PageResult(index=0, seconds=1.5, text="hello <world>")])
    unready = NotAvailable(_("Docker engine not reachable at {where} — start Docker (e.g. sudo systemctl start "
                             "docker)", where="unix:///var/run/docker.sock"))
    show_comparison(config, Evaluation([sample], [
        ModelResult(first, [Row(first, sample, Run(first, result), None)]),
        ModelResult(Choice("qwen3_vl_2b", "vllm", "text"), error=unready.message)]))


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_a_side_that_could_not_start_leaves_the_other_readable(lang):
    at = AppTest.from_function(one_side_only, default_timeout=60)
    at.query_params["lang"] = lang
    at.run()
    assert not at.exception
    (text,) = side_html(at)
    assert ">hello &lt;world&gt;</div>" in text  # the reading itself, escaped, not "(no text)"
    captions = [c.value for c in at.caption]
    if lang == "en":
        assert at.error[0].value == ("Qwen3-VL 2B Instruct · vLLM · Plain text: Docker engine not reachable at "
                                     "unix:///var/run/docker.sock — start Docker (e.g. sudo systemctl start docker)")
        assert "Page 1 read in 1.50 s" in captions and "1 run is kept in the History." in captions
    else:
        assert at.error[0].value == ("Qwen3-VL 2B Instruct · vLLM · Простой текст: Движок Docker недоступен по "
                                     "адресу unix:///var/run/docker.sock — запустите Docker (например, sudo "
                                     "systemctl start docker)")
        assert "Страница 1 распознана за 1,50 с" in captions
