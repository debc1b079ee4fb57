"""Page preparation: scans and phone photos made readable before a model reads them.

Each step looks at the page and does nothing when the page does not need it, so a clean
page comes through untouched. There are two kinds of step:

- geometric ones (``upright``, ``straighten``) change the page itself. The result refers
  to the prepared page: its width, height and every box are in pixels of the page turned
  upright and straightened, at the original resolution, and the layout view draws on it.
- recognition-only ones (``even_out``, ``denoise``, ``enlarge``) change only what an OCR
  engine sees (``Page.ocr_image``, ``Page.ocr_scale`` pixels per page pixel); the engine
  maps its boxes back onto the prepared page.

What was done is one line in ``page.warnings`` ("Page 3 was prepared for reading: turned
90° clockwise; straightened 3.4°."); ``describe`` gives the caption part of it, in any language.

OpenCV (opencv-python-headless: wheels for every platform, no GUI libraries) does the pixel
work: it is the kept library with resampling, morphology, median and connected components
in one package and releases the GIL, so pages prepared in threads use every core.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import replace
from io import BytesIO

import cv2
import numpy as np
from PIL import Image

from managers.engines.tesseract import single_threaded_env
from models.config import Preprocess
from models.document import Page
from models.i18n import Message, N_, _, translate

# Orientation: Tesseract's OSD reads a copy this small (body text of a 200 dpi A4 page
# stays ~16 px high, which OSD still classifies; smaller, it misses sideways pages) and
# tries at most 5 × OSD_CHARACTERS characters instead of its default 5 × 50, which halves
# its time. Measured on a Russian page in four turns: confidence 3.3-7 for right answers,
# under 1.5 for the wrong ones it gives on a blurred, noisy scan.
OSD_SIDE = 1200
# Where the small copy leaves OSD unsure: a page of a few large lines (a notice, a form at
# 30 px letters) gave confidence 0.2-0.8 at 1200 px and 18 at full A4 size.
OSD_RETRY_SIDE = 2400
OSD_CHARACTERS = 15
OSD_MIN_CONFIDENCE = 3.0
OSD_TIMEOUT_S = 60
# Deskew: angles searched, and the least worth a resampling of the page.
MAX_SKEW = 15.0
MIN_SKEW = 0.2
ANALYSIS_SIDE = 1000
# Ink pixels (of the copy ANALYSIS_SIDE long) and peak over median sharpness that make the
# found angle worth trusting: measured 14 (a noisy scan) to 46 for pages of text, under 4
# for a lone word or a page lying on its side.
MIN_INK = 500
MIN_PEAK = 8
# Lighting: the paper's brightness may vary this much across the page before it is evened.
MAX_BACKGROUND_SPREAD = 40
LIGHT_SIDE = 600
# Noise: the median difference between a pixel and its 3×3 median; 0 on a clean scan or
# render (most pixels are plain paper), ~5 on a speckled JPEG scan.
MAX_NOISE = 2
# Small text: Tesseract wants characters ~20 px high; smaller text is enlarged to that.
SMALL_TEXT_PX = 12
TEXT_TARGET_PX = 18
MAX_UPSCALE = 4

PREPARED = N_("Page {page} was prepared for reading: {steps}.")
# The same line as plain English text: how runs kept before messages had ids store it.
_NOTE = re.compile(r"^Page \d+ was prepared for reading: (.*)\.$")
_TURNS = {90: _("turned 90° clockwise"), 180: _("turned 180°"), 270: _("turned 90° counter-clockwise")}


def describe(warnings: list[Message], lang: str = "en") -> str:
    """The caption for a prepared page ("turned 90° clockwise; straightened 3.4°"), from a
    page's or a page result's warnings, in ``lang``; empty when nothing was done."""
    found = []
    for warning in warnings:
        if isinstance(warning, Message) and warning.id == PREPARED:
            found.append(translate(warning.params["steps"], lang))
        elif m := _NOTE.match(warning):
            found.append(m.group(1))
    return "; ".join(found)


def _steps(notes: list[Message]) -> Message:
    """The steps as one list in the reader's language: "a; b; c"."""
    steps = notes[0]
    for note in notes[1:]:
        steps = _("{steps}; {step}", steps=steps, step=note)
    return steps


def prepare_page(page: Page, settings: Preprocess) -> Page:
    """The page as it should be read; ``page`` itself is not changed. A page whose PDF text
    layer covers it (models/text_layer.py) is left as it is: the layer's boxes belong to the
    page as it is, and an invisible OCR layer is checked against a reading of that page."""
    if page.text_layer:
        return page
    image, full_size, notes, warnings = page.image, page.full_size, [], []
    grey = np.asarray(image.convert("L"))
    cleaned = grey
    # Light and noise are fixed first: OSD and the skew search see the cleaned page too.
    if settings.denoise:
        cleaned, note = denoise(cleaned)
        notes += [note] if note else []
    if settings.lighting:
        cleaned, note = even_out(cleaned)
        notes += [note] if note else []
    recognition = bool(notes)
    if settings.orientation:
        try:
            turn = orientation(cleaned)
        except OSError as exc:
            turn = 0
            warnings.append(_("Page {page} was not checked for orientation: {reason}", page=page.index + 1, reason=exc))
        if turn:
            image, cleaned = _turn(image, turn), np.ascontiguousarray(np.rot90(cleaned, -turn // 90))
            full_size = full_size[::-1] if full_size and turn != 180 else full_size
            notes.append(_TURNS[turn])
    if settings.deskew:
        angle = skew(cleaned)
        if angle:
            ratio = full_size[0] / image.width if full_size else None
            image = Image.fromarray(_rotate(np.asarray(image), angle))
            cleaned = _rotate(cleaned, angle)
            full_size = (round(image.width * ratio), round(image.height * ratio)) if ratio else None
            notes.append(_("straightened {angle:.1f}°", angle=abs(angle)))
    scale = 1.0
    if settings.upscale:
        cleaned, scale, note = enlarge(cleaned)
        notes += [note] if note else []
        recognition = recognition or scale != 1.0
    if notes:
        warnings.insert(0, _(PREPARED, page=page.index + 1, steps=_steps(notes)))
    return replace(page, image=image, full_size=full_size, warnings=page.warnings + warnings,
                   ocr_image=Image.fromarray(cleaned) if recognition else None, ocr_scale=scale)


def orientation(grey: np.ndarray) -> int:
    """Degrees (0, 90, 180, 270) to turn the page clockwise to stand it upright, by
    Tesseract's orientation detection on a shrunken copy — and where that copy leaves OSD
    unsure, on a larger one (a page of a few large lines, a form, shrunk to OSD_SIDE has too
    few letters OSD can tell apart); 0 when OSD is still unsure or finds too few characters
    (a page with little text is left as it is). Raises OSError when Tesseract cannot run."""
    for side in (OSD_SIDE, OSD_RETRY_SIDE):
        if side > OSD_SIDE and max(grey.shape) <= OSD_SIDE:
            break  # the page was read whole already
        found = _osd(_shrink(grey, side))
        if found is not None and found[1] >= OSD_MIN_CONFIDENCE:
            return found[0]
    return 0


def _osd(grey: np.ndarray) -> tuple[int, float] | None:
    """OSD's turn and its confidence, or None when it finds too few characters."""
    buf = BytesIO()
    Image.fromarray(grey).save(buf, format="PNG", compress_level=1)
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "--psm", "0", "-c", f"min_characters_to_try={OSD_CHARACTERS}"],
            input=buf.getvalue(), capture_output=True, timeout=OSD_TIMEOUT_S, env=single_threaded_env())
    except FileNotFoundError:
        raise OSError(_("Tesseract is not installed (sudo apt-get install tesseract-ocr).")) from None
    except subprocess.TimeoutExpired:
        raise OSError(_("orientation detection took over {seconds} s.", seconds=OSD_TIMEOUT_S)) from None
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    if done.returncode != 0:
        if "Too few characters" in out:
            return None
        lines = out.strip().splitlines()
        raise OSError(_("Tesseract's orientation detection failed ({reason}).",
                        reason=lines[-1] if lines else str(done.returncode)))
    rotate = re.search(r"Rotate: (\d+)", out)
    confidence = re.search(r"Orientation confidence: ([\d.]+)", out)
    if not rotate or not confidence:
        return None
    return int(rotate.group(1)) % 360, float(confidence.group(1))


def skew(grey: np.ndarray) -> float:
    """The angle in degrees (counter-clockwise positive) by which the text lines lean, up to
    ±MAX_SKEW; 0.0 when under MIN_SKEW or no text is found. Leptonica's (and so Tesseract's)
    method: the ink's row profile is sharpest when lines are level, searched coarse to fine."""
    small = _shrink(grey, ANALYSIS_SIDE)
    ys, xs = np.nonzero(_ink(small))
    if len(xs) < MIN_INK:
        return 0.0
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)

    def sharpness(degrees: float) -> float:
        t = math.radians(degrees)
        rows = np.round(ys * math.cos(t) + xs * math.sin(t)).astype(np.int64)
        profile = np.bincount(rows - rows.min()).astype(np.float64)
        return float(np.sum(np.diff(profile) ** 2))

    angles = np.arange(-MAX_SKEW, MAX_SKEW + 0.25, 0.5)
    scores = np.array([sharpness(a) for a in angles])
    # Lines of text give one sharp peak; a word or two, or a page on its side, give none.
    if scores.max() < MIN_PEAK * np.median(scores):
        return 0.0
    best = angles[scores.argmax()]
    best = max(np.arange(best - 0.5, best + 0.525, 0.05), key=sharpness)
    return float(round(best, 2)) if abs(best) >= MIN_SKEW else 0.0


def denoise(grey: np.ndarray) -> tuple[np.ndarray, Message | None]:
    """A 3×3 median when the page is speckled: it removes salt, pepper and JPEG blocks and
    keeps strokes. Measured on a noisy scan: CER 0.13 → 0.00; non-local means did worse
    (0.03) at 200× the time, and our own local threshold after it worse still."""
    median = cv2.medianBlur(grey, 3)
    # The median difference reaches MAX_NOISE when half the pixels are at least that far off.
    if np.count_nonzero(cv2.absdiff(grey, median) >= MAX_NOISE) * 2 < grey.size:
        return grey, None
    return median, _("removed noise")


def even_out(grey: np.ndarray) -> tuple[np.ndarray, Message | None]:
    """Divide the page by its paper brightness when that varies (a shadow, a lamp to one
    side): the paper becomes white everywhere and text keeps its contrast, so the engine's
    own threshold is right across the page. This division by a local background is the
    adaptive part; a local threshold of our own after it was measured worse on noisy pages
    (CER 0.44 vs 0.00) and no better on shadowed ones."""
    small = _shrink(grey, LIGHT_SIDE)
    # Paper brightness: a max filter wider than a stroke wipes the text out, a median
    # smooths what is left. Light changes slowly, so a small copy is enough.
    background = cv2.medianBlur(cv2.dilate(small, np.ones((9, 9), np.uint8)), 13)
    if float(np.percentile(background, 98) - np.percentile(background, 2)) <= MAX_BACKGROUND_SPREAD:
        return grey, None
    background = cv2.resize(background, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.divide(grey, np.maximum(background, 1), scale=255), _("evened out uneven lighting")


def enlarge(grey: np.ndarray) -> tuple[np.ndarray, float, Message | None]:
    """Scale the page up when its characters are smaller than Tesseract reads well."""
    # A global threshold: this runs after even_out, and unlike a local one it leaves the
    # specks of a grainy page out of the count.
    ink = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)[1]
    stats = cv2.connectedComponentsWithStats(ink, connectivity=8)[2]
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    heights = heights[(stats[1:, cv2.CC_STAT_AREA] >= 6) & (heights >= 3) & (heights < grey.shape[0] / 10)]
    if len(heights) < 20:  # no text to speak of
        return grey, 1.0, None
    height = float(np.median(heights))
    if height >= SMALL_TEXT_PX:
        return grey, 1.0, None
    factor = min(MAX_UPSCALE, math.ceil(TEXT_TARGET_PX / height))
    big = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    return big, float(factor), _("scaled up {factor}× for small text", factor=factor)


def _ink(grey: np.ndarray) -> np.ndarray:
    """Dark marks against their surroundings: text, whatever the lighting."""
    return cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 20)


def _shrink(grey: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(grey.shape)
    if scale >= 1:
        return grey
    return cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _turn(image: Image.Image, clockwise: int) -> Image.Image:
    return image.transpose({90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                            270: Image.Transpose.ROTATE_90}[clockwise])


def _rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    """Turn the page back by ``degrees`` on a canvas grown to hold all of it, the new
    corners filled with the colour of the page's edge (its paper, or the scanner lid)."""
    height, width = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), -degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = math.ceil(width * cos + height * sin), math.ceil(width * sin + height * cos)
    matrix[0, 2] += (new_w - width) / 2
    matrix[1, 2] += (new_h - height) / 2
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    fill = np.median(edge, axis=0)
    fill = tuple(float(v) for v in np.atleast_1d(fill))
    return cv2.warpAffine(pixels, matrix, (new_w, new_h), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
