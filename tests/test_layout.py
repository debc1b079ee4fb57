"""dots.ocr answers → boxes on the original page's pixels, repairs, bad cells dropped one by one."""

import math

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
    blocks, warnings = layout.to_blocks(CELLS, SEEN, PAGE)
    assert warnings == []
    sx, sy = PAGE[0] / SEEN[0], PAGE[1] / SEEN[1]
    assert blocks[1].bbox == (round(140 * sx), round(210 * sy), round(1512 * sx), round(290 * sy))
    assert blocks[-1].bbox[3] == PAGE[1]  # the edge stays on the edge
    assert [b.category for b in blocks] == [c["category"] for c in CELLS]
    assert blocks[6].text == ""  # Picture cells have no text


def test_boxes_outside_the_image_are_clamped_and_unknown_categories_become_text():
    blocks, warnings = layout.to_blocks([{"bbox": [-5, 10, 2000, 3000], "category": "Sticker", "text": "x"},
                                         {"bbox": [150, 150, 180, 190], "category": "Text", "text": "off"}],
                                        (100, 100), (200, 200))
    assert [(b.bbox, b.category) for b in blocks] == [((0, 20, 200, 200), "Text")]
    assert warnings == ["partly parsed: 1 cell outside the page was dropped"]


BAD_CELLS = [
    '{"bbox": [NaN, 0, 10, 10], "category": "Text", "text": "nan"}',
    '{"bbox": [0, 0, 1e400, 10], "category": "Text", "text": "inf"}',
    '{"bbox": [0, 0, 5e9, 10], "category": "Text", "text": "absurd"}',
    '{"bbox": [true, 0, 10, 10], "category": "Text", "text": "bool"}',
    '{"bbox": ["0", 0, 10, 10], "category": "Text", "text": "string"}',
    '{"bbox": [0, 0, 10, 10], "category": "Text", "text": ["a", "list"]}',
    '{"bbox": [0, 0, 10, 10], "category": {"a": 1}, "text": "dict category"}',
    '[1, 2, 3]',
    '"just a string"',
]


def test_each_bad_cell_is_dropped_on_its_own_and_the_good_ones_kept():
    answer = "[" + ", ".join([*BAD_CELLS, '{"bbox": [0, 0, 10, 10], "category": "Text", "text": "ok"}']) + "]"
    cells, warnings = layout.parse_layout(answer)
    assert [c["text"] for c in cells] == ["ok"]
    assert warnings == ["partly parsed: 7 cells without a valid box were dropped",
                        "partly parsed: 2 cells whose text or category was not text were dropped"]


def test_a_deeply_nested_answer_is_not_a_crash():
    cells, warnings = layout.parse_layout("[" * 100_000)
    assert cells == [] and "cut off" in warnings[0]


def test_a_picture_crop_is_bounded_and_clamped():
    page = Image.new("RGB", (6000, 6000), "white")
    picture = layout.crop(page, (-100, -100, 7000, 7000))
    assert picture.width * picture.height <= layout.MAX_PICTURE_PIXELS and picture.width == picture.height
    assert layout.crop(page, (10, 10, 10, 50)) is None
    assert math.isclose(layout.crop(page, (0, 0, 100, 50)).width, 100)
