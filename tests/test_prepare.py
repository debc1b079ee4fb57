"""Page preparation (managers/prepare.py) on the degraded pages the benchmark reads, and
Tesseract reading pages side by side and being cancelled."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
import yaml
from PIL import Image

from managers.engines.tesseract import TesseractEngine
from managers.prepare import describe, prepare_page, skew
from models.config import DEFAULT_CONFIG, Preprocess, parse_config, usable_cores
from models.document import Page
from models.engine import Engine
from models.errors import ConfigError, EngineError
from tests.degrade import FONT_SIZE, GAP, TENDER, TEXT, degraded, skewed, tender_page, turned
from tests.helpers import ENGLISH, RUSSIAN, cer, line_boxes, render_lines

VLM = Preprocess()  # orientation and deskew, as the VLMs have it


@pytest.fixture
def tesseract(config):
    return config.models["tesseract"]


@pytest.fixture
def engine(tesseract):
    return TesseractEngine("tesseract", tesseract, 2)


def read(engine, page):
    return engine.read_page(page, engine.model.tasks["text"])


def ink_share(image: Image.Image, box) -> float:
    crop = np.asarray(image.convert("L").crop(box))
    return float((crop < 128).mean())


@pytest.mark.parametrize("turn, note", [(0, ""), (90, "turned 90° clockwise"), (180, "turned 180°"),
                                        (270, "turned 90° counter-clockwise")])
def test_a_turned_page_comes_back_upright(turn, note):
    upright = tender_page()
    page = prepare_page(Page(0, turned(upright, turn)), VLM)
    assert np.array_equal(np.asarray(page.image), np.asarray(upright))
    assert describe(page.warnings) == note


@pytest.mark.parametrize("turn, note", [(90, "turned 90° clockwise"), (180, "turned 180°")])
def test_a_turned_page_of_few_large_lines_comes_back_upright(turn, note):
    """A notice of 15 lines in 30 px letters: shrunk to OSD_SIDE it leaves OSD unsure, so a
    larger copy decides."""
    from tests.fields_pages import NOTICE_PAGE_1, render
    upright = render(NOTICE_PAGE_1)
    page = prepare_page(Page(0, turned(upright, turn)), VLM)
    assert np.array_equal(np.asarray(page.image), np.asarray(upright))
    assert describe(page.warnings) == note


@pytest.mark.parametrize("angle", [3.5, -7.0])
def test_skew_is_recovered_within_half_a_degree(angle):
    slanted = skewed(tender_page(), angle)
    assert skew(np.asarray(slanted.convert("L"))) == pytest.approx(angle, abs=0.5)
    page = prepare_page(Page(0, slanted), VLM)
    assert skew(np.asarray(page.image.convert("L"))) == 0.0
    assert describe(page.warnings) == f"straightened {abs(angle):.1f}°"
    # The canvas grew so no corner was cut, and was filled with the paper's white.
    assert page.image.width >= slanted.width and page.image.height >= slanted.height
    assert page.image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("kind, note", [
    ("phone_shadow", "evened out uneven lighting"),
    ("noisy_scan", "removed noise"),
    ("sideways", "turned 90° clockwise"),
    ("skewed", "straightened 3.5°"),
    ("dpi100", "scaled up 2× for small text"),
])
def test_a_degraded_page_reads_through_the_engine(engine, tesseract, kind, note):
    page = prepare_page(Page(0, degraded(kind)), tesseract.preprocess)
    assert describe(page.warnings) == note
    result = read(engine, page)
    assert cer(TEXT, result.text) <= 0.02, result.text
    assert (result.width, result.height) == page.image.size


def test_a_clean_page_is_untouched(engine, tesseract):
    clean = Page(0, tender_page())
    page = prepare_page(clean, tesseract.preprocess)
    assert page.image is clean.image and page.ocr_image is None and page.ocr_scale == 1.0
    assert page.warnings == [] and describe(page.warnings) == ""
    assert read(engine, page).text == read(engine, clean).text
    assert cer(TEXT, read(engine, page).text) == 0


@pytest.mark.parametrize("turn", [0, 90])
def test_a_page_with_almost_no_text_is_left_as_it_is(tesseract, turn):
    sparse = turned(render_lines(["Итого"]), turn)
    page = prepare_page(Page(0, sparse), tesseract.preprocess)
    assert "turned" not in describe(page.warnings)
    assert page.image.size == sparse.size


def test_a_blank_page_is_left_as_it_is(tesseract):
    blank = Image.new("RGB", (1654, 2339), "white")
    page = prepare_page(Page(0, blank), tesseract.preprocess)
    assert page.image is blank and page.warnings == [] and page.ocr_image is None


def test_boxes_of_a_turned_page_land_on_its_text(engine, tesseract):
    page = prepare_page(Page(0, turned(tender_page(), 90)), tesseract.preprocess)
    result = read(engine, page)
    assert len(result.blocks) == len(TENDER)
    expected = line_boxes(TENDER, font_size=FONT_SIZE, top=150, gap=GAP)
    for block, want in zip(result.blocks, expected):
        assert all(abs(a - b) <= 12 for a, b in zip(block.bbox, want)), (block.bbox, want)
        assert ink_share(page.image, block.bbox) > 0.05


def test_boxes_found_on_an_enlarged_copy_are_scaled_back(engine, tesseract):
    small = degraded("dpi100")
    page = prepare_page(Page(0, small), tesseract.preprocess)
    assert page.ocr_scale == 2.0 and page.image is small
    result = read(engine, page)
    assert (result.width, result.height) == small.size
    expected = line_boxes(TENDER, font_size=FONT_SIZE, top=150, gap=GAP)
    for block, want in zip(result.blocks, expected):
        assert all(abs(a - b / 2) <= 8 for a, b in zip(block.bbox, want)), (block.bbox, want)
        assert ink_share(small, block.bbox) > 0.05


def test_a_page_rendered_small_keeps_its_full_size_when_turned():
    # A PDF page rendered smaller for a VLM: results are in pixels of the full page.
    upright = tender_page()
    small = turned(upright, 90).resize((1754, 1240))
    page = prepare_page(Page(0, small, full_size=(2339, 1654)), VLM)
    assert describe(page.warnings) == "turned 90° clockwise"
    assert page.image.size == (1240, 1754) and page.size == (1654, 2339)


def test_a_page_with_a_text_layer_is_read_as_it_is(tesseract):
    page = Page(0, turned(tender_page(), 90), text_layer=[[]])
    assert prepare_page(page, tesseract.preprocess) is page


def test_pages_read_side_by_side_come_back_right_and_a_failed_page_keeps_its_error(engine):
    lines = [ENGLISH[0], RUSSIAN[0], ENGLISH[1], RUSSIAN[1]]
    pages = [Page(i, render_lines([line], size=(1400, 300))) for i, line in enumerate(lines)]
    pages.insert(2, Page(2, Image.new("RGB", (40000, 8), "white")))  # over Tesseract's size limit
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda p: Engine.guarded(p.index, lambda: read(engine, p)), pages))
    assert [r.index for r in results] == [0, 1, 2, 2, 3]
    assert results[2].error.startswith("Tesseract failed on page 3")
    for result, line in zip(results[:2] + results[3:], lines):
        assert result.error is None and cer(line, result.text) <= 0.02, result.text


def tesseract_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "tesseract"]


def test_abort_kills_the_page_in_flight_and_refuses_the_next(engine):
    # A page large and dense enough to take Tesseract many seconds.
    huge = Page(4, render_lines(TENDER * 4, size=(3308, 4700), font_size=40, top=20, gap=70))
    outcome = {}

    def run():
        try:
            read(engine, huge)
        except EngineError as exc:
            outcome["error"] = str(exc)
    reader = threading.Thread(target=run)
    reader.start()
    deadline = time.monotonic() + 30
    while not tesseract_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    (process,) = tesseract_children()
    engine.abort()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert outcome["error"] == "Page 5 was not read: cancelled."
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"^Page 1 was not read: cancelled\.$"):
        read(engine, Page(0, render_lines(ENGLISH)))
    assert time.monotonic() - started < 1 and not tesseract_children()


def test_preparation_defaults_follow_the_backend(config):
    assert config.models["tesseract"].preprocess == Preprocess(lighting=True, denoise=True, upscale=True)
    assert all(m.preprocess == VLM for m in config.models.values() if m.cpu is None)


def test_a_preparation_setting_overrides_only_itself(config):
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data["models"]["tesseract"]["preprocess"] = {"deskew": False}
    data["limits"]["cpu_workers"] = None
    parsed = parse_config(data)
    assert parsed.models["tesseract"].preprocess == Preprocess(deskew=False, lighting=True, denoise=True, upscale=True)
    assert parsed.limits.cpu_workers == usable_cores() == config.limits.cpu_workers
    data["models"]["tesseract"]["preprocess"] = {"sharpen": True}
    with pytest.raises(ConfigError, match=r"models\.tesseract\.preprocess\.sharpen: unknown key"):
        parse_config(data)
    data["models"]["tesseract"]["preprocess"] = {}
    data["limits"]["cpu_workers"] = 0
    with pytest.raises(ConfigError, match=r"limits\.cpu_workers"):
        parse_config(data)
