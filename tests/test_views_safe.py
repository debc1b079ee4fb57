"""A model's text on screen is text (issue 17, point 6): the Markdown tab drawn from the page's
typed blocks, and Compare's diff as one HTML block of escaped words. Nothing of an answer
becomes a heading, a link, an image or HTML there."""

from html import escape

from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from views import diff

LEAK = "http://127.0.0.1:1/leak"
HOSTILE = f"\n\n# Heading\n\n![x]({LEAK})\n\n| a | b |\n|---|---|\n| 1 | 2 |"


def markdown_tab(answer: str | None) -> None:
    """The Markdown tab of a page: its blocks given here, or parsed from ``answer``; and, last,
    the picture as cropped by hand, to compare the tab's picture with."""
    import streamlit as st
    from PIL import Image

    from models import structure
    from models.elements import Code, Formula, Heading, ListBlock, ListItem, Paragraph, Picture, Table
    from views.result import show_elements

    leak = "http://127.0.0.1:1/leak"
    page = Image.new("RGB", (200, 100), "white")
    page.paste((200, 30, 30), (120, 20, 180, 80))
    if answer is None:
        elements = [Heading(text=f"Offer ![x]({leak})", level=1),
                    Paragraph(text=f"See ![x]({leak}) and <img src=\"{leak}\">\n# not a heading"),
                    ListBlock(items=[ListItem(text="first"), ListItem(text=f"[link]({leak})", level=1)],
                              ordered=True),
                    Table(cells=[["№", "Цена"], ["1.10", "1 250 000,00"]]),
                    Formula(latex=r"E = mc^2"),
                    Formula(latex=f"x\n$$\n![f]({leak})\n$$ y"),
                    Code(text="print('<b>')"),
                    Picture(bbox=(120, 20, 180, 80))]
    else:
        elements = structure.from_markdown(answer)[0]
    show_elements(elements, page)
    st.divider()
    st.image(page.crop((120, 20, 180, 80)))


def test_the_markdown_tab_draws_each_block_and_no_model_markdown():
    at = AppTest.from_function(markdown_tab, args=(None,), default_timeout=60).run()
    assert not at.exception
    assert [h.value for h in at.get("html")] == [f"<h2>Offer ![x]({LEAK})</h2>"]  # a heading, as text
    assert not at.markdown  # no model text is read as Markdown, where an address becomes a link
    assert [t.value for t in at.text] == [f"See ![x]({LEAK}) and <img src=\"{LEAK}\">\n# not a heading",
                                          f"1. first\n    1. [link]({LEAK})"]
    frame = at.dataframe[0].value
    assert list(frame.columns) == ["№", "Цена"] and frame.iloc[0].tolist() == ["1.10", "1 250 000,00"]
    assert [m.value for m in at.latex] == ["$$\nE = mc^2\n$$"]
    # a formula that would close its "$$" block early shows as its source
    assert [c.value for c in at.code] == [f"x\n$$\n![f]({LEAK})\n$$ y", "print('<b>')"]
    picture, by_hand = at.image
    assert picture.value == by_hand.value  # the same bytes: the page cropped by the picture's box


def test_a_hostile_answer_shows_its_addresses_as_text():
    answer = ("# Offer\n\nSee ![x](http://127.0.0.1:1/leak) and [the terms](http://127.0.0.1:1/link).\n\n"
              '<img src="http://127.0.0.1:1/img" onerror="window.__pwned=1">\n\n'
              "<script>window.__pwned = 1</script>\n\n![](data:image/png;base64,iVBORw0KGgo=)\n")
    at = AppTest.from_function(markdown_tab, args=(answer,), default_timeout=60).run()
    assert not at.exception
    assert not at.markdown and [h.value for h in at.get("html")] == ["<h2>Offer</h2>"]
    shown = "\n".join(t.value for t in at.text)
    assert f"x ({LEAK})" in shown and "the terms (http://127.0.0.1:1/link)" in shown
    assert "__pwned" not in shown and "iVBOR" not in shown  # a data URL is named, its bytes never kept
    assert len(at.image) == 1  # only the reference crop: an answer's picture is never shown


def test_a_diff_block_holds_its_text_to_the_end():
    """In Markdown an HTML block ends at a blank line: the text after it would be read as
    Markdown — a heading, a table, an image fetched from anywhere."""
    html = diff.block(escape("intro" + HOSTILE), "(no text)")
    reader = MarkdownIt("commonmark").enable("table")
    assert [token.type for token in reader.parse(html)] == ["html_block"]
    shown = reader.render(html)
    assert "<img" not in shown and "<h1" not in shown and "<table" not in shown
    assert f"![x]({LEAK})" in shown


def compare_side(text: str) -> None:
    """The Compare result with one side read (as ``text``) and the other unable to start."""
    from managers.evaluation import Evaluation, ModelResult, Row, Sample
    from managers.runs import Choice, Run
    from models.config import load_config
    from models.document import open_document
    from models.errors import NotAvailable
    from models.i18n import _
    from models.result import OCRResult, PageResult
    from tests.helpers import MIXED, encode, render_lines
    from views.compare import show_comparison

    config = load_config()
    sample = Sample(open_document(encode(render_lines(MIXED[:1]), "PNG"), "one.png", config.limits))
    first = Choice("tesseract", "cpu", "text")
    result = OCRResult(model="tesseract", engine="tesseract", task="text",
                       pages=[PageResult(index=0, seconds=1.5, text=text)])
    show_comparison(config, Evaluation([sample], [
        ModelResult(first, [Row(first, sample, Run(first, result), None)]),
        ModelResult(Choice("qwen3_vl_2b", "vllm", "text"), error=NotAvailable(_("The model is not ready.")).message)]))


def test_compare_shows_a_hostile_reading_inside_its_block():
    at = AppTest.from_function(compare_side, args=("intro" + HOSTILE,), default_timeout=60).run()
    assert not at.exception
    (side,) = [m.value for m in at.markdown if LEAK in m.value]
    assert side.startswith('<div class="diff-text"') and side.endswith("</div>") and "\n" not in side
    assert f"intro<br><br># Heading<br><br>![x]({LEAK})<br>" in side


def test_a_message_shown_in_an_alert_is_escaped_so_a_server_cannot_plant_markdown():
    from models.i18n import _
    from views.i18n import said

    refusal = _("The model server refused page {page}: {reason}", page=1,
                reason="![x](http://127.0.0.1:1/leak) <img src=x onerror=alert(1)> [link](http://h)")
    shown = said(refusal)
    import re
    assert "![x](" not in shown and "[link](" not in shown
    assert re.search(r"(?<!\\)[<\[\]]", shown) is None  # every bracket escaped
    assert shown.replace("\\", "") == str(refusal)  # only escapes added: the words read the same


def test_a_download_that_cannot_be_made_says_so_in_one_sentence(monkeypatch, limits):
    import streamlit as st

    from models.document import open_document
    from models.exports import word
    from models.result import OCRResult, PageResult
    from tests.helpers import encode
    from views import result as view

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(word, "export", broken)
    from PIL import Image
    image = Image.new("RGB", (40, 40), "white")
    document = open_document(encode(image, "PNG"), "scan.png", limits)
    read = OCRResult(model="m", engine="e", task="t", pages=[PageResult(index=0, text="x")])
    data = view._export(read, "docx", document, lambda i: image)
    said = st.session_state.pop(view.EXPORT_FAILED)
    assert data.decode() == said == "'scan.png' could not be written as docx (OSError: disk full); the other " \
                                    "documents are not affected."
