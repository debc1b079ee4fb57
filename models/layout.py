"""dots.ocr layout answers: parse (and repair) the JSON, put boxes back on the original page,
and write the page as Markdown.

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
HEADER_FOOTER = ("Page-header", "Page-footer")


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
        except json.JSONDecodeError:
            break  # the cut-off cell: nothing after it is complete
        if isinstance(obj, dict):
            found.append(obj)
        i = text.find("{", end)
    return found


def parse_layout(answer: str) -> tuple[list[dict], list[Message]]:
    """The answer's valid cells in reading order, and warnings when it was repaired."""
    text = _strip_fence(answer)
    warnings = []
    try:
        data = json.loads(text)
        cells = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        cells = _complete_objects(text)
        warnings.append(n_("partly parsed: the layout answer was cut off; kept the {n} complete cell "
                           "before the cut",
                           "partly parsed: the layout answer was cut off; kept the {n} complete cells "
                           "before the cut", len(cells)))
    valid, seen, repeats = [], set(), 0
    for cell in cells:
        if not _is_cell(cell):
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
    if len(valid) < len(cells) - repeats:
        warnings.append(n_("partly parsed: {n} cell without a valid box was dropped",
                           "partly parsed: {n} cells without a valid box were dropped",
                           len(cells) - repeats - len(valid)))
    return valid, warnings


def _is_cell(cell) -> bool:
    bbox = cell.get("bbox") if isinstance(cell, dict) else None
    return (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) for v in bbox))


def to_blocks(cells: list[dict], seen_size: tuple[int, int], page_size: tuple[int, int]) -> list[Block]:
    """Cells in the model's pixels → blocks in the original page's pixels, clamped to it."""
    (sw, sh), (pw, ph) = seen_size, page_size
    sx, sy = pw / sw, ph / sh
    blocks = []
    for cell in cells:
        x1, y1, x2, y2 = cell["bbox"]
        box = (min(max(round(x1 * sx), 0), pw), min(max(round(y1 * sy), 0), ph),
               min(max(round(x2 * sx), 0), pw), min(max(round(y2 * sy), 0), ph))
        category = cell.get("category") if cell.get("category") in CATEGORIES else "Text"
        blocks.append(Block(bbox=box, category=category, text=str(cell.get("text") or "")))
    return blocks


def _crop_data_url(image: Image.Image, bbox: tuple[int, int, int, int]) -> str:
    buf = io.BytesIO()
    image.crop(bbox).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def to_markdown(blocks: list[Block], page: Image.Image | None, hide_header_footer: bool = False) -> str:
    """Markdown in reading order: tables stay HTML, formulas become $$ blocks, pictures are
    cropped from the page."""
    parts = []
    for block in blocks:
        if hide_header_footer and block.category in HEADER_FOOTER:
            continue
        if block.category == "Picture":
            x1, y1, x2, y2 = block.bbox
            if page is not None and x2 > x1 and y2 > y1:
                parts.append(f"![Picture]({_crop_data_url(page, block.bbox)})")
        elif block.category == "Formula":
            formula = block.text.strip().removeprefix("$$").removesuffix("$$").strip()
            parts.append(f"$$\n{formula}\n$$")
        elif block.text.strip():
            parts.append(block.text.strip())
    return "\n\n".join(parts)


def to_text(blocks: list[Block], hide_header_footer: bool = False) -> str:
    return "\n\n".join(b.text.strip() for b in blocks if b.text.strip()
                       and not (hide_header_footer and b.category in HEADER_FOOTER))
