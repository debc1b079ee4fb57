"""An answer parsed once into typed blocks: layouts, Markdown, HTML tables, plain text; capped
tables; links and images of an answer kept as text; old history rows still open."""

from PIL import Image

from models import render, structure, tables
from models.answers import Prepared, page_from_answer
from models.config import Task
from models.elements import Formula, Heading, ListBlock, Merge, Paragraph, Picture, Table
from models.layout import to_blocks
from models.result import Block, OCRResult, PageResult
from tests.dots_answers import CELLS, COMPLETE, PAGE, SEEN

SPANNED = """<table>
<tr><th>№</th><th>Наименование</th><th colspan="2">Цена</th></tr>
<tr><td rowspan="2">1</td><td>Стул<br>офисный</td><td>1 250 000,00</td><td>007</td></tr>
<tr><td>Стол</td><td>47&nbsp;300,50</td><td>15.12.2026</td></tr>
<tr><td>ИНН</td><td colspan="2" rowspan="2">7707083893</td><td>-3,5</td></tr>
<tr><td>Итого</td><td>12</td></tr>
</table>"""


def only(elements, kind):
    return [e for e in elements if e.type == kind]


def test_html_spans_keep_their_text_as_written_once_at_the_first_position():
    [table], warnings = tables.from_html(SPANNED)
    assert table.cells == [
        ["№", "Наименование", "Цена", ""],
        ["1", "Стул офисный", "1 250 000,00", "007"],
        ["", "Стол", "47 300,50", "15.12.2026"],
        ["ИНН", "7707083893", "", "-3,5"],
        ["Итого", "", "", "12"],
    ]
    assert table.merges == [Merge(row=0, col=2, rows=1, cols=2), Merge(row=1, col=0, rows=2, cols=1),
                            Merge(row=3, col=1, rows=2, cols=2)]
    assert warnings == []


def test_malformed_spans_are_clipped_to_the_table():
    [table], _ = tables.from_html('<table><tr><td rowspan="9">a</td><td colspan="x">b</td></tr>'
                                  '<tr><td colspan="3">c</td></tr></table>')
    assert table.cells == [["a", "b", "", ""], ["", "c", "", ""]]
    assert table.merges == [Merge(row=0, col=0, rows=2, cols=1), Merge(row=1, col=1, rows=1, cols=3)]


def test_runaway_spans_are_capped_with_a_warning_that_says_what_was_cut():
    row = "".join('<td colspan="1000">x</td>' for _ in range(20))
    [table], warnings = tables.from_html(f"<table><tr>{row}</tr><tr><td>y</td></tr></table>")
    assert table.width == tables.MAX_COLUMNS and len(table.cells) == 2
    assert warnings == [f"A table of 2×20,000 cells was cut to its first 2 rows and {tables.MAX_COLUMNS} columns."]
    rows = "".join("<tr><td>r</td></tr>" for _ in range(tables.MAX_ROWS + 5))
    [tall], warnings = tables.from_html(f"<table>{rows}</table>")
    assert len(tall.cells) == tables.MAX_ROWS and "first 1,000 rows" in warnings[0]


def test_markdown_answer_blocks_in_reading_order():
    markdown = ("# Прайс\n\n| Товар | Цена |\n|---|---|\n| **Стул** | 1 250,00 |\n| `A-1` |\n\n"
                "Текст между\nтаблицами.\n\n"
                "<table><tr><td>a</td></tr>\n\n<tr><td>b</td></tr></table>\n\n"  # a blank line inside
                "```html\n<html><body><p>x</p><table><tr><td>c</td></tr></table></body></html>\n```\n\n"
                "- один\n  - два\n\n1. first\n\n$$\nS = p q\n$$\n")
    elements, warnings = structure.from_markdown(markdown)
    assert [e.type for e in elements] == ["heading", "table", "paragraph", "table", "paragraph", "table",
                                          "list", "list", "formula"]
    assert elements[0] == Heading(text="Прайс", level=1)
    assert [t.cells for t in only(elements, "table")] == [[["Товар", "Цена"], ["Стул", "1 250,00"], ["A-1", ""]],
                                                          [["a"], ["b"]], [["c"]]]
    assert elements[2].text == "Текст между\nтаблицами."
    assert elements[6].items[1].level == 1 and elements[7].ordered
    assert elements[8] == Formula(latex="S = p q")
    assert warnings == []


def test_links_and_images_of_an_answer_are_text_and_html_is_never_kept():
    answer = ('See [the site](http://127.0.0.1:9/leak) and ![x](http://127.0.0.1:9/leak.png) '
              '![p](data:image/png;base64,iVBORw0KGgo=) <img src="http://127.0.0.1:9/i" onerror="alert(1)">\n\n'
              '<script>window.pwned = 1</script>\n\n<div><img src="http://127.0.0.1:9/j"></div>')
    elements, _ = structure.from_markdown(answer)
    assert [e.text for e in elements] == [
        "See the site (http://127.0.0.1:9/leak) and x (http://127.0.0.1:9/leak.png) p (data:image/png;base64,…)"]
    markdown = render.elements_markdown(elements)
    assert "](" not in markdown and "<" not in markdown.replace("\\<", "")
    assert "base64,iVBOR" not in markdown


def test_a_dots_layout_becomes_typed_blocks():
    blocks, _ = to_blocks(CELLS, SEEN, PAGE)
    elements, warnings = structure.from_layout(blocks)
    assert [e.type for e in elements] == ["paragraph", "heading", "heading", "paragraph", "table", "formula",
                                          "picture", "paragraph", "list", "paragraph", "paragraph"]
    assert elements[0].role == "header" and elements[-1].role == "footer" and elements[7].role == "caption"
    assert elements[1] == Heading(text="Техническое задание на поставку оборудования", level=1, bbox=blocks[1].bbox)
    assert elements[2].text == "1. Scope of supply" and elements[2].level == 2
    assert elements[3].text == "The supplier delivers 12 office chairs and 4 desks within 30 days of signing."
    assert elements[4].cells == [["Item", "Qty"], ["Chair", "12"], ["Desk", "4"]]
    assert elements[5].latex == "S = \\sum_{i=1}^{n} p_i q_i"
    assert elements[6] == Picture(bbox=blocks[6].bbox)
    assert elements[8].items[0].text == "Срок поставки: 30 дней"
    hidden, _ = structure.from_layout(blocks, hide_header_footer=True)
    assert len(hidden) == len(elements) - 2 and all(getattr(e, "role", "body") not in ("header", "footer")
                                                   for e in hidden)


def test_a_layout_page_renders_text_and_markdown_from_its_blocks_with_pictures_cropped():
    class Source:
        def load(self, max_pixels=None):
            from models.document import Page
            return Page(0, Image.new("RGB", PAGE, "white"))
    request = Prepared(index=0, size=PAGE, seen_size=SEEN, messages=[])
    task = Task(label="layout", output="layout", prompt="p")
    page = page_from_answer(COMPLETE, False, request, task, 100, source=Source())
    assert page.elements[4].type == "table"
    assert "<table" not in page.text and "Item\tQty\nChair\t12\nDesk\t4" in page.text
    assert "![Picture](data:image/png;base64," in page.markdown
    assert "| Item | Qty |" in page.markdown


def test_a_bad_cell_costs_that_cell_not_the_page():
    request = Prepared(index=0, size=(200, 200), seen_size=(100, 100), messages=[])
    task = Task(label="layout", output="layout", prompt="p")
    answer = ('[{"bbox": [NaN, 0, 1, 1], "text": "a"}, {"bbox": [0, 0, 1e400, 1], "text": "b"}, '
              '{"bbox": [0, 0, 10, 10], "text": ["c"]}, {"bbox": [0, 0, 50, 50], "category": "Text", "text": "kept"}]')
    page = page_from_answer(answer, False, request, task, 100)
    assert page.error is None and page.text == "kept" and len(page.blocks) == 1
    assert page.warnings == ["partly parsed: 2 cells without a valid box were dropped",
                             "partly parsed: 1 cell whose text or category was not text was dropped"]


def test_a_plain_answer_is_kept_as_written():
    elements = structure.from_text("Строка 1\nСтрока 2\n\n\n# не заголовок\n")
    assert elements == [Paragraph(text="Строка 1\nСтрока 2"), Paragraph(text="# не заголовок")]
    assert render.elements_markdown(elements) == "Строка 1  \nСтрока 2\n\n\\# не заголовок"


def test_tables_of_a_result_come_from_its_blocks_in_page_order():
    result = OCRResult(model="m", engine="e", task="t", pages=[
        PageResult(index=0, elements=[Table(cells=[["a"], ["1"]]), Paragraph(text="x"), Table(cells=[["2"]])]),
        PageResult(index=1, error="Page 2 is damaged."),
        PageResult(index=2, elements=[Table(cells=[["3"]])]),
    ])
    found = tables.of_result(result)
    assert [(t.page, t.number, t.name) for t in found] == [(0, 1, "p1 t1"), (0, 2, "p1 t2"), (2, 1, "p3 t1")]
    assert [t.table.cells for t in found] == [[["a"], ["1"]], [["2"]], [["3"]]]


def test_a_page_kept_before_typed_blocks_still_opens_with_them():
    old_markdown = PageResult.model_validate({"index": 0, "text": "x", "markdown": "# T\n\n<table><tr><td>1.10</td></tr></table>"})
    assert [e.type for e in old_markdown.elements] == ["heading", "table"]
    assert old_markdown.elements[1].cells == [["1.10"]]
    old_layout = PageResult.model_validate({"index": 0, "markdown": "ignored", "blocks": [
        {"bbox": [0, 0, 5, 5], "category": "Title", "text": "# Заголовок"},
        {"bbox": [0, 6, 5, 9], "category": "Picture", "text": ""}]})
    assert old_layout.elements == [Heading(text="Заголовок", level=1, bbox=(0, 0, 5, 5)), Picture(bbox=(0, 6, 5, 9))]
    new = PageResult(index=0, markdown="# T", elements=[])
    assert new.elements == []  # a new page's blocks are what the engine gave
    again = PageResult.model_validate_json(PageResult(index=0, elements=[ListBlock(items=[])]).model_dump_json())
    assert again.elements == [ListBlock(items=[])]


def test_a_block_inside_a_list_item_stays_where_it_was_written():
    elements, _ = structure.from_markdown("1. Лот 1\n\n   | Товар | Цена |\n   |---|---|\n   | Стул | 100 |\n\n"
                                          "2. Лот 2\n\n   ```\n   code\n   ```\n\n   more text\n3. three\n")
    assert [e.type for e in elements] == ["list", "table", "list", "code", "list"]
    assert [[(i.marker, i.text) for i in e.items] for e in elements if e.type == "list"] == [
        [("1.", "Лот 1")], [("2.", "Лот 2")], [("", "more text"), ("3.", "three")]]
    assert render.elements_text(elements).startswith("1. Лот 1\n\nТовар\tЦена\nСтул\t100\n\n2. Лот 2")


def test_list_numbers_are_kept_as_written():
    elements, _ = structure.from_markdown("3. Срок поставки: 10 дней.\n4. Цена: 1 250 000,00 руб.\n\n* пункт\n")
    assert render.elements_text(elements) == "3. Срок поставки: 10 дней.\n4. Цена: 1 250 000,00 руб.\n\n* пункт"
    assert render.elements_markdown(elements).startswith("3. Срок поставки: 10 дней.\n4. Цена:")


def test_no_text_of_an_html_answer_is_lost_or_run_together():
    elements, _ = structure.from_markdown(
        "<div>Итого по разделу:<table><tr><td><p>a</p><p>b</p></td></tr></table>Всего 5 позиций</div>\n"
        "Подпись: Иванов И.И.\n\nСтрока<br>вторая\n\n<table><td>без</td><td>строк</td></table>")
    assert render.elements_text(elements) == ("Итого по разделу:\n\na b\n\nВсего 5 позиций\n\nПодпись: Иванов И.И."
                                              "\n\nСтрока\nвторая\n\nбез\nстрок")


def test_a_formula_cannot_close_its_block_in_the_markdown():
    elements = [Formula(latex="x\n$$\n\n![leak](http://127.0.0.1:9/leak)\n\n$$\ny")]
    markdown = render.elements_markdown(elements)
    tokens = tables.parse_markdown(markdown)
    assert [t.type for t in tokens] == ["fence"] and "![leak]" in tokens[0].content
    found, _ = structure.from_markdown("$$ a $$ text $$ b $$")
    assert found == [Paragraph(text="$$ a $$ text $$ b $$")]  # two formulas and text: not one formula


def test_huge_numbers_and_lone_surrogates_cost_their_cell_only():
    request = Prepared(index=0, size=(200, 200), seen_size=(100, 100), messages=[])
    task = Task(label="layout", output="layout", prompt="p")
    good = '{"bbox": [0, 0, 50, 50], "category": "Text", "text": "kept"}'
    for bad in ('{"bbox": [0, 0, 1' + "0" * 400 + ', 1], "text": "a"}',
                '{"bbox": [0, 0, 1' + "0" * 5000 + ', 1], "text": "a"}',
                '{"bbox": [0, 0, 5, 5], "text": "ok \\ud800"}',
                '{"bbox": [0, 0, 5, 5], "text": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"):
        page = page_from_answer(f"[{good}, {bad}]", False, request, task, 100)
        assert page.error is None and page.text == "kept", bad[:40]
        page.model_dump_json()  # it can be kept and exported


def test_a_page_of_many_pictures_keeps_its_crops_within_a_budget():
    from models import layout

    class Source:
        def load(self, max_pixels=None):
            from models.document import Page
            return Page(0, Image.new("RGB", (2000, 2800), "white"))
    cells = ", ".join(f'{{"bbox": [{i}, 0, {1000 + i}, 1400], "category": "Picture"}}' for i in range(40))
    request = Prepared(index=0, size=(2000, 2800), seen_size=(1000, 1400), messages=[])
    page = page_from_answer(f"[{cells}]", False, request, Task(label="l", output="layout", prompt="p"), 100,
                            source=Source())
    assert len(page.elements) == 40
    shown = page.markdown.count("data:image/png")
    assert 1 <= shown <= layout.PAGE_PICTURE_PIXELS // layout.MAX_PICTURE_PIXELS
