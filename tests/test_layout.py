"""dots.ocr answers → blocks on the original page's pixels, Markdown, repairs."""

import pytest
from PIL import Image

from models import layout
from tests.dots_answers import CELLS, COMPLETE, FENCED, LOOPING, PAGE, SEEN, TRUNCATED


def test_smart_resize_matches_qwen2_vl():
    assert layout.smart_resize(2339, 1653) == (2352, 1652)  # 200 dpi A4: multiples of 28, within range
    h, w = layout.smart_resize(2339, 1653, max_pixels=1_003_520)  # Qwen2-VL-2B's cap
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 1_003_520 and abs(h / w - 2339 / 1653) < 0.03
    assert layout.smart_resize(20, 30) == (56, 84)  # lifted to min_pixels
    h, w = layout.smart_resize(10_000, 10_000)  # shrunk to max_pixels
    assert h * w <= 11_289_600 and h == w
    with pytest.raises(ValueError, match="aspect ratio"):
        layout.smart_resize(10, 3000)


@pytest.mark.parametrize("answer", [COMPLETE, FENCED])
def test_complete_answer(answer):
    cells, warnings = layout.parse_layout(answer)
    assert cells == CELLS and warnings == []


def test_truncated_answer_keeps_every_complete_cell():
    cells, warnings = layout.parse_layout(TRUNCATED)
    assert cells == CELLS[:4]
    assert warnings == ["partly parsed: the layout answer was cut off; kept the 4 complete cells before the cut"]


def test_looping_answer_drops_the_repeats():
    cells, warnings = layout.parse_layout(LOOPING)
    assert cells == CELLS[:9]
    assert any("40 repeated cells" in w for w in warnings)
    assert any("cut off" in w for w in warnings)


def test_cells_without_a_valid_box_are_dropped():
    cells, warnings = layout.parse_layout('[{"bbox": [1, 2, 3], "category": "Text"}, '
                                          '{"bbox": [0, 0, 10, 10], "category": "Text", "text": "ok"}]')
    assert [c["text"] for c in cells] == ["ok"]
    assert warnings == ["partly parsed: 1 cell without a valid box was dropped"]


def test_boxes_are_scaled_back_to_the_original_page():
    blocks = layout.to_blocks(CELLS, SEEN, PAGE)
    sx, sy = PAGE[0] / SEEN[0], PAGE[1] / SEEN[1]
    assert blocks[1].bbox == (round(140 * sx), round(210 * sy), round(1512 * sx), round(290 * sy))
    assert blocks[-1].bbox[3] == PAGE[1]  # the edge stays on the edge
    assert [b.category for b in blocks] == [c["category"] for c in CELLS]
    assert blocks[6].text == ""  # Picture cells have no text


def test_boxes_outside_the_image_are_clamped_and_unknown_categories_become_text():
    blocks = layout.to_blocks([{"bbox": [-5, 10, 2000, 3000], "category": "Sticker", "text": "x"}], (100, 100), (200, 200))
    assert blocks[0].bbox == (0, 20, 200, 200) and blocks[0].category == "Text"


def test_markdown_keeps_tables_as_html_formulas_as_blocks_and_crops_pictures():
    page = Image.new("RGB", PAGE, "white")
    blocks = layout.to_blocks(CELLS, SEEN, PAGE)
    md = layout.to_markdown(blocks, page)
    assert md.startswith("ООО «Поставка» — Техническое задание\n\n# Техническое задание")
    assert "<table><thead><tr><th>Item</th>" in md
    assert "$$\nS = \\sum_{i=1}^{n} p_i q_i\n$$" in md
    assert "![Picture](data:image/png;base64," in md
    hidden = layout.to_markdown(blocks, page, hide_header_footer=True)
    assert "ООО «Поставка»" not in hidden and not hidden.endswith("\n\n1")
    assert "ООО «Поставка»" not in layout.to_text(blocks, hide_header_footer=True)
