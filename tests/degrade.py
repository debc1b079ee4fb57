"""A Russian page with known text, and the ways real scanners and phones deliver it.

Shared by tests/test_prepare.py and bench/cpu_fidelity.py, so the tests check the same
pages the benchmark reports on. Every degradation is seeded: the same page every run.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from tests.helpers import A4, render_lines

# A tender page as it is typed: ~11.5 pt at 200 dpi, enough text for Tesseract's
# orientation detection to be sure.
TENDER = [
    "Техническое задание на поставку оборудования",
    "Заказчик: государственное бюджетное учреждение",
    "Предмет закупки: поставка офисной мебели",
    "Количество: 120 стульев и 40 столов",
    "Начальная цена контракта: 1 248 000 рублей",
    "Срок поставки: не позднее 15 марта 2026 года",
    "Место поставки: город Москва, улица Ленина, дом 7",
    "Срок подачи заявок истекает пятнадцатого марта",
    "Обеспечение заявки: пять процентов от цены",
    "Гарантийный срок: не менее двадцати четырёх месяцев",
    "Оплата производится в течение тридцати дней",
    "Съешь же ещё этих мягких французских булок",
    "Контактное лицо: Иванов Пётр Сергеевич",
    "Телефон для справок: +7 495 123-45-67",
    "Заявки принимаются только в электронной форме",
    "Победитель определяется по наименьшей цене",
]
FONT_SIZE = 32
GAP = 64
TEXT = "\n".join(TENDER)

# What each kind does, with its parameters; printed by the benchmark.
KINDS = {
    "clean": "rendered page, A4 at 200 dpi",
    "sideways": "turned 90° counter-clockwise, no EXIF orientation",
    "upside_down": "turned 180°, no EXIF orientation",
    "skewed": "rotated 3.5° on white, bicubic",
    "noisy_scan": "blur (Gaussian radius 2), grey Gaussian noise σ=28, 1% salt-and-pepper, JPEG quality 35",
    "phone_shadow": "light falling from 100% at the left edge to 35% at mid-page (a hand's shadow), "
                    "blur (radius 0.8), JPEG quality 70",
    "dpi100": "scanned at 100 dpi (half of 200 dpi, Lanczos)",
}


def tender_page() -> Image.Image:
    return render_lines(TENDER, size=A4, font_size=FONT_SIZE, top=150, gap=GAP)


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def turned(img: Image.Image, degrees: int) -> Image.Image:
    """The page turned counter-clockwise by a multiple of 90°, as a scanner stores it."""
    return img.rotate(degrees, expand=True)


def skewed(img: Image.Image, degrees: float) -> Image.Image:
    return img.rotate(degrees, resample=Image.BICUBIC, expand=True, fillcolor="white")


def noisy_scan(img: Image.Image, blur: float = 2, sigma: float = 28, salt: float = 0.01,
               quality: int = 35, seed: int = 1) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    arr = arr + rng.normal(0, sigma, arr.shape[:2])[..., None]
    hit = rng.random(arr.shape[:2]) < salt
    arr[hit] = rng.choice([0.0, 255.0], size=int(hit.sum()))[:, None]
    return jpeg(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), quality)


def phone_shadow(img: Image.Image, darkest: float = 0.35, quality: int = 70) -> Image.Image:
    arr = np.asarray(img.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
    width = arr.shape[1]
    light = 1.0 - (1.0 - darkest) * np.clip(np.arange(width, dtype=np.float32) / (width / 2), 0, 1)
    return jpeg(Image.fromarray((arr * light[None, :, None]).astype(np.uint8)), quality)


def rescanned(img: Image.Image, dpi: int, at: int = 200) -> Image.Image:
    w, h = img.size
    return img.resize((round(w * dpi / at), round(h * dpi / at)), Image.LANCZOS)


SCANS = ("clean", "sideways", "upside_down", "skewed", "noisy_scan", "phone_shadow", "dpi100")


def degraded(kind: str, page: Image.Image | None = None) -> Image.Image:
    page = page or tender_page()
    return {
        "clean": lambda: page,
        "sideways": lambda: turned(page, 90),
        "upside_down": lambda: turned(page, 180),
        "skewed": lambda: skewed(page, 3.5),
        "noisy_scan": lambda: noisy_scan(page),
        "phone_shadow": lambda: phone_shadow(page),
        "dpi100": lambda: rescanned(page, 100),
    }[kind]()
