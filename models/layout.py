"""dots.ocr layout answers: parse (and repair) the JSON, put boxes back on the original page,
and crop pictures from the page.

dots.ocr answers with a JSON list of ``{bbox: [x1, y1, x2, y2], category, text}`` in the
pixels of the image it saw, which Qwen2-VL's smart resize made from ours (sides multiples
of 28, area within min/max pixels). Long pages can end mid-cell (max_tokens) or loop on
one cell; every complete, distinct cell is kept and the page is marked "partly parsed".
"""

from __future__ import annotations

import base64
import io
import json
import math

from PIL import Image

from models.i18n import Message, _, n_
from models.result import Block

FACTOR = 28
CATEGORIES = ("Caption", "Footnote", "Formula", "List-item", "Page-footer", "Page-header",
              "Picture", "Section-header", "Table", "Text", "Title")
MAX_COORDINATE = 1_000_000
MAX_PICTURE_PIXELS = 2_000_000  # a picture crop in an export, however large its box (1,400 px square)
PAGE_PICTURE_PIXELS = 3 * MAX_PICTURE_PIXELS  # all of a page's picture crops together


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = 3136,
                 max_pixels: int = 11_289_600) -> tuple[int, int]:
    """The (height, width) Qwen2-VL's processor resizes an image to: both sides multiples of
    ``factor``, the area within [min_pixels, max_pixels], the aspect ratio kept."""
    if max(height, width) / max(min(height, width), 1) > 200:
        raise ValueError(_("aspect ratio over 200 ({width}×{height})", width=str(width), height=str(height)))
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def _strip_fence(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text.strip()


def _complete_objects(text: str) -> list[dict]:
    """Every complete JSON object at the top level of a (possibly cut) JSON array."""
    decoder = json.JSONDecoder()
    found, i = [], text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            break  # the cut-off cell (or one no parser should follow): nothing after it is kept
        if isinstance(obj, dict):
            found.append(obj)
        i = text.find("{", end)
    return found


def parse_layout(answer: str) -> tuple[list[dict], list[Message]]:
    """The answer's valid cells in reading order, and warnings when it was repaired. A cell that
    is not valid (a box that is not four finite numbers within reason, a text or category that
    is not text) is dropped on its own: one bad cell never costs the page."""
    text = _strip_fence(answer)
    warnings = []
    try:
        data = json.loads(text)
        cells = data if isinstance(data, list) else [data]
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError, as is a 5000-digit number
        cells = _complete_objects(text)
        warnings.append(n_("partly parsed: the layout answer was cut off; kept the {n} complete cell "
                           "before the cut",
                           "partly parsed: the layout answer was cut off; kept the {n} complete cells "
                           "before the cut", len(cells)))
    valid, seen, repeats, bad_box, bad_text = [], set(), 0, 0, 0
    for cell in cells:
        if not _has_box(cell):
            bad_box += 1
            continue
        if not (_is_text(cell.get("category") or "") and _is_text(cell.get("text") or "")):
            bad_text += 1
            continue
        key = (tuple(cell["bbox"]), cell.get("category"), cell.get("text", ""))
        if key in seen:
            repeats += 1  # a looping answer repeats cells verbatim
            continue
        seen.add(key)
        valid.append(cell)
    if repeats:
        warnings.append(n_("partly parsed: {n} repeated cell of a looping answer was dropped",
                           "partly parsed: {n} repeated cells of a looping answer were dropped", repeats))
    if bad_box:
        warnings.append(n_("partly parsed: {n} cell without a valid box was dropped",
                           "partly parsed: {n} cells without a valid box were dropped", bad_box))
    if bad_text:
        warnings.append(n_("partly parsed: {n} cell whose text or category was not text was dropped",
                           "partly parsed: {n} cells whose text or category was not text were dropped", bad_text))
    return valid, warnings


def _has_box(cell) -> bool:
    return is_box(cell.get("bbox") if isinstance(cell, dict) else None)


def is_box(bbox) -> bool:
    """Four numbers within reason (no page a model sees is a million pixels wide); NaN and
    infinity fail the comparison, and an integer is never turned into a float that overflows."""
    return (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                    and -MAX_COORDINATE <= v <= MAX_COORDINATE for v in bbox))


def _is_text(value) -> bool:
    """A string that can be written out again: JSON's "\\ud800" decodes to a lone surrogate,
    which no UTF-8 file, history row or export can hold."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_page(bbox, seen_size: tuple[int, int], page_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A box in the model's pixels → the original page's pixels, clamped to it; None when
    it lies wholly off the image the model was given."""
    (sw, sh), (pw, ph) = seen_size, page_size
    x1, y1, x2, y2 = bbox
    if max(x1, x2) < 0 or max(y1, y2) < 0 or min(x1, x2) > sw or min(y1, y2) > sh:
        return None
    sx, sy = pw / sw, ph / sh
    return (min(max(round(x1 * sx), 0), pw), min(max(round(y1 * sy), 0), ph),
            min(max(round(x2 * sx), 0), pw), min(max(round(y2 * sy), 0), ph))


def to_blocks(cells: list[dict], seen_size: tuple[int, int],
              page_size: tuple[int, int]) -> tuple[list[Block], list[Message]]:
    """Cells in the model's pixels → blocks in the original page's pixels, clamped to it; a
    cell wholly off the image it was given is dropped."""
    blocks, outside = [], 0
    for cell in cells:
        box = to_page(cell["bbox"], seen_size, page_size)
        if box is None:
            outside += 1
            continue
        category = cell.get("category") if cell.get("category") in CATEGORIES else "Text"
        blocks.append(Block(bbox=box, category=category, text=cell.get("text") or ""))
    warnings = [n_("partly parsed: {n} cell outside the page was dropped",
                   "partly parsed: {n} cells outside the page were dropped", outside)] if outside else []
    return blocks, warnings


class Crops:
    """A page's pictures, within PAGE_PICTURE_PIXELS in all: 40 picture cells of an answer must
    not make 40 full-size crops. Past the budget a picture is left out (None)."""

    def __init__(self, image: Image.Image):
        self.image = image
        self.left = PAGE_PICTURE_PIXELS

    def picture(self, bbox: tuple[int, int, int, int]) -> Image.Image | None:
        picture = crop(self.image, bbox)
        if picture is None or picture.width * picture.height > self.left:
            return None
        self.left -= picture.width * picture.height
        return picture

    def data_url(self, bbox: tuple[int, int, int, int]) -> str | None:
        """The picture as a PNG data URL, for Markdown."""
        if (picture := self.picture(bbox)) is None:
            return None
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def crop(image: Image.Image, bbox: tuple[int, int, int, int]) -> Image.Image | None:
    """The page inside ``bbox`` (clamped to it), at most MAX_PICTURE_PIXELS; None for no area."""
    x1, y1, x2, y2 = (max(0, min(v, limit)) for v, limit in zip(bbox, image.size * 2))
    if x2 <= x1 or y2 <= y1:
        return None
    picture = image.crop((x1, y1, x2, y2))
    if picture.width * picture.height > MAX_PICTURE_PIXELS:
        scale = math.sqrt(MAX_PICTURE_PIXELS / (picture.width * picture.height))
        picture = picture.resize((max(1, int(picture.width * scale)), max(1, int(picture.height * scale))))
    return picture
