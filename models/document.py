"""Document intake: bytes in, validated RGB pages out.

A document is opened once and checked up front (type, size, pixel limit, encryption,
truncation of single images); pages are decoded lazily so a 500-page PDF costs memory
for the pages being read, not for all of them. A page that fails to decode later raises
InputError for that page alone, and the engine keeps the others.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, ImageSequence

from models.config import Limits
from models.errors import InputError
from models.i18n import Message, _, n_
from models.text_layer import TextSpan, Use, facts, judge, lines

FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "webp": "WebP", "pdf": "PDF"}
EXTENSIONS = {
    ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".tif": "tiff",
    ".tiff": "tiff", ".bmp": "bmp", ".webp": "webp", ".pdf": "pdf",
}
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in EXTENSIONS)
# Formats people commonly upload by mistake, named so the error says what the file is.
_OTHER_SIGNATURES = {
    b"GIF8": _("a GIF image"), b"PK\x03\x04": _("a ZIP archive (or an Office document)"),
    b"\xd0\xcf\x11\xe0": _("an old Office document"), b"{\\rtf": _("an RTF document"),
    b"\x1f\x8b": _("a gzip archive"), b"\x00\x00\x00\x0cjP": _("a JPEG 2000 image"),
}


def sniff(data: bytes) -> str | None:
    """The format the bytes really hold, from their signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    return None


def _what_it_is(data: bytes) -> Message:
    for signature, what in _OTHER_SIGNATURES.items():
        if data.startswith(signature):
            return what
    try:
        data[:4096].decode("utf-8")
        return _("text")
    except UnicodeDecodeError:
        return _("data of an unknown kind")


@dataclass
class Page:
    index: int
    image: Image.Image
    # A PDF's own text, paragraphs of lines in page pixels, when it covers the page
    # (models/text_layer.py); ``text_layer_hidden``: it is an invisible OCR layer, kept only
    # where a reading of the page agrees with it.
    text_layer: list[list[TextSpan]] | None = None
    warnings: list[Message] = field(default_factory=list)
    # The page's size in result pixels, when ``image`` was rendered smaller for a model.
    full_size: tuple[int, int] | None = None
    # What an OCR engine reads instead of ``image`` when preparation cleaned or enlarged it
    # (managers/prepare.py), and its pixels per ``image`` pixel: boxes are divided by it.
    ocr_image: Image.Image | None = None
    ocr_scale: float = 1.0
    text_layer_hidden: bool = False
    # Why the PDF's text layer is not used (an OCR engine says it; a VLM reads images anyway).
    text_layer_note: Message | None = None

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in the pixels results are given in (the page at pdf_dpi)."""
        return self.full_size or self.image.size

    def load(self, max_pixels: int | None = None) -> Page:
        return self


@dataclass(frozen=True)
class PageRef:
    """A page not decoded yet; ``load()`` decodes it (and may raise InputError)."""

    document: Document
    index: int

    def load(self, max_pixels: int | None = None) -> Page:
        return self.document.page(self.index, max_pixels)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: EXIF orientation applied, transparency over white,
    16-bit and float data scaled rather than clipped."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size else 0
        if img.mode == "F" and top <= 1.0:
            arr = arr * 255.0
        elif top > 255:
            arr = arr / 257.0
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("L", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def png_bytes(image: Image.Image) -> bytes:
    """A page kept as it was read (turned, straightened): PNG loses nothing of it."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class Document:
    """An opened, validated document; use ``open_document`` or ``open_path``."""

    def __init__(self, name: str, kind: str, page_count: int, limits: Limits, data: bytes):
        self.name = name
        self.kind = kind
        self.data = data  # the file as given: the run history keeps it and its hash
        self.page_count = page_count
        self.limits = limits

    def page(self, index: int, max_pixels: int | None = None) -> Page:
        """Page ``index`` as RGB. ``max_pixels``: the reader will shrink it to this anyway,
        so a format that can (PDF) renders it that small to begin with."""
        raise NotImplementedError

    def pages(self, indexes: list[int] | None = None) -> list[PageRef]:
        indexes = list(range(self.page_count)) if indexes is None else indexes
        return [PageRef(self, i) for i in indexes]

    def _check_pixels(self, width: int, height: int, where: Message) -> None:
        pixels = width * height
        if pixels > self.limits.max_image_pixels:
            raise InputError(_(
                "{where} is {width}×{height} pixels ({mpx:.0f} Mpx), over the {limit:.0f} Mpx limit "
                "(limits.max_image_pixels); scale it down and upload it again.",
                where=where, width=str(width), height=str(height), mpx=pixels / 1e6,
                limit=self.limits.max_image_pixels / 1e6))


@contextlib.contextmanager
def _decoding(where: Message, limits: Limits) -> Iterator[None]:
    """Decompression bombs are refused by our own check on the header size
    (limits.max_image_pixels), with a sentence that names the limit. Pillow's own limit stays
    on for the rest of the process: here its warning is ignored, and its error (an image over
    twice its limit, refused before its size is known) becomes a sentence too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except Image.DecompressionBombError:
            most = 2 * Image.MAX_IMAGE_PIXELS
            if limits.max_image_pixels <= most:
                raise InputError(_("{where} is over the {limit:.0f} Mpx limit (limits.max_image_pixels); scale it "
                                   "down and upload it again.", where=where,
                                   limit=limits.max_image_pixels / 1e6)) from None
            raise InputError(_("{where} is over {limit:.0f} Mpx, the most any image is decoded to, whatever "
                               "limits.max_image_pixels allows; scale it down and upload it again.",
                               where=where, limit=most / 1e6)) from None


class ImageDocument(Document):
    def __init__(self, name: str, kind: str, data: bytes, limits: Limits):
        self._lock = threading.Lock()
        damaged = InputError(_("'{name}' is damaged: it starts like a {format} image but cannot be "
                               "decoded; export it again and upload the new file.", name=name, format=FORMATS[kind]))
        try:
            with _decoding(_("'{name}'", name=name), limits):
                img = Image.open(io.BytesIO(data))
                # Only TIFF pages are pages; animated WebP frames are not document pages.
                count = getattr(img, "n_frames", 1) if kind == "tiff" else 1
                sizes = [frame.size for _, frame in zip(range(count), ImageSequence.Iterator(img))]
        except InputError:
            raise
        except Exception:  # Pillow raises many types for damaged headers
            raise damaged from None
        super().__init__(name, kind, count, limits, data)
        self._image = img
        for i, size in enumerate(sizes):
            self._check_pixels(*size, self._where(i))
        self._decoded: dict[int, Page] = {}
        if count == 1:
            # A single image is decoded now, so truncation is reported at upload.
            self._decoded[0] = self.page(0)

    def _where(self, index: int) -> Message:
        if self.page_count == 1:
            return _("'{name}'", name=self.name)
        return _("Page {page} of '{name}'", page=index + 1, name=self.name)

    def page(self, index: int, max_pixels: int | None = None) -> Page:
        if index in self._decoded:
            return self._decoded[index]
        with self._lock:
            try:
                self._image.seek(index)
                frame = self._image.copy()
                with _decoding(self._where(index), self.limits):
                    frame.load()
                rgb = to_rgb(frame)
            except InputError:
                raise
            except Exception as exc:  # truncated data surfaces as OSError, SyntaxError, ...
                raise InputError(_("{where} is truncated or damaged ({reason}); export it again and "
                                   "upload the new file.", where=self._where(index), reason=exc)) from None
        return Page(index, rgb)


class PDFDocument(Document):
    def __init__(self, name: str, data: bytes, limits: Limits):
        import pymupdf

        self._lock = threading.Lock()
        try:
            pdf = pymupdf.open(stream=data, filetype="pdf")
        except Exception:
            raise InputError(_("'{name}' is a broken PDF that cannot be opened; save or print it to "
                               "PDF again and upload the new file.", name=name)) from None
        # A PDF with only an owner password opens with the empty user password.
        if pdf.needs_pass and not pdf.authenticate(""):
            raise InputError(_("'{name}' is password-protected; remove the password "
                               "(e.g. print it to a new PDF) and upload it again.", name=name))
        if pdf.page_count == 0:
            raise InputError(_("'{name}' has no pages.", name=name))
        super().__init__(name, "pdf", pdf.page_count, limits, data)
        self._pdf = pdf

    def page(self, index: int, max_pixels: int | None = None) -> Page:
        with self._lock:  # PyMuPDF documents are not safe to share between threads
            try:
                return self._render(index, max_pixels)
            except InputError:
                raise
            except Exception as exc:
                raise InputError(_("Page {page} of '{name}' cannot be rendered ({reason}); the other "
                                   "pages are not affected.", page=index + 1, name=self.name, reason=exc)) from None

    def _render(self, index: int, max_pixels: int | None) -> Page:
        import pymupdf

        pdf_page = self._pdf[index]
        warnings = []
        dpi = self.limits.pdf_dpi
        w_in, h_in = pdf_page.rect.width / 72, pdf_page.rect.height / 72
        if w_in * h_in * dpi * dpi > self.limits.max_image_pixels:
            # A poster-sized page is read at a lower resolution rather than refused.
            dpi = int((self.limits.max_image_pixels / (w_in * h_in)) ** 0.5)
            if dpi < 36:
                raise InputError(_("Page {page} of '{name}' is {width:.0f}×{height:.0f} inches, too large "
                                   "to render under the pixel limit (limits.max_image_pixels).",
                                   page=index + 1, name=self.name, width=w_in, height=h_in))
            warnings.append(_("Page {page} is {width:.0f}×{height:.0f} inches; rendered at {dpi} dpi "
                              "to stay under the pixel limit.", page=index + 1, width=w_in, height=h_in, dpi=dpi))
        full = (pdf_page.rect * pymupdf.Matrix(dpi / 72, dpi / 72)).irect
        render_dpi = dpi
        if max_pixels and full.width * full.height > 1.2 * max_pixels:
            # Rendering 4 Mpx to shrink it to 1 Mpx costs CPU that a busy model server needs.
            render_dpi = dpi * (1.1 * max_pixels / (full.width * full.height)) ** 0.5
        zoom = render_dpi / 72
        pix = pdf_page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False)
        image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
        full_size = (full.width, full.height) if render_dpi != dpi else None
        page = Page(index, image, warnings=warnings, full_size=full_size)
        if self.limits.use_pdf_text_layer and (layer := lines(pdf_page, dpi / 72)):
            verdict = judge(facts(pdf_page, layer, dpi / 72, image), index + 1)
            if verdict.use is not Use.IMAGE:
                page.text_layer, page.text_layer_hidden = layer, verdict.use is Use.CHECK
            page.text_layer_note = verdict.note
        return page


def open_document(data: bytes, name: str, limits: Limits) -> Document:
    """Validate and open a document; raises InputError with one sentence on bad input."""
    size_mb = len(data) / 2**20
    if not data:
        raise InputError(_("'{name}' is empty (0 bytes); choose the file again.", name=name))
    if size_mb > limits.max_upload_mb:
        raise _too_large(name, size_mb, limits)
    kind = sniff(data)
    claimed = EXTENSIONS.get(Path(name).suffix.lower())
    if kind is None:
        what = _what_it_is(data)
        if claimed:
            raise InputError(_("'{name}' is not a {format} file: it holds {what}.",
                               name=name, format=FORMATS[claimed], what=what))
        raise InputError(_("'{name}' holds {what}; upload a PNG, JPEG, TIFF, BMP, WebP or PDF.", name=name, what=what))
    if claimed and claimed != kind:
        raise InputError(_("'{name}' is named as {claimed} but holds {format} data; rename it with "
                           "the right extension and upload it again.",
                           name=name, claimed=FORMATS[claimed], format=FORMATS[kind]))
    if kind == "pdf":
        return PDFDocument(name, data, limits)
    return ImageDocument(name, kind, data, limits)


def open_path(path: str | Path, limits: Limits) -> Document:
    path = Path(path)
    try:
        size = path.stat().st_size
        # Checked before reading so a huge file is refused without loading it.
        if size > limits.max_upload_mb * 2**20:
            raise _too_large(path.name, size / 2**20, limits)
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(_("'{path}' is a folder, not a file.", path=path)) from None
    except FileNotFoundError:
        raise InputError(_("'{path}' does not exist.", path=path)) from None
    except OSError as exc:
        raise InputError(_("'{path}' cannot be read: {reason}.", path=path, reason=exc.strerror)) from None
    return open_document(data, path.name, limits)


def _too_large(name: str, size_mb: float, limits: Limits) -> InputError:
    return InputError(_("'{name}' is {size:.0f} MB, over the {limit} MB limit (limits.max_upload_mb); "
                        "split it or raise the limit.", name=name, size=size_mb, limit=limits.max_upload_mb))


def parse_page_range(spec: str, page_count: int) -> list[int]:
    """'1-20', '3', '1-3,7,10-' → 0-based page indexes, in order, without repeats."""
    indexes: list[int] = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                first, _dash, last = part.partition("-")
                lo, hi = int(first or 1), int(last or page_count)
            else:
                lo = hi = int(part)
        except ValueError:
            raise InputError(_("'{spec}' is not a page range; write it like 1-20 or 1,3,5-7.", spec=spec)) from None
        if lo < 1 or hi > page_count or lo > hi:
            raise InputError(_("Pages {part} are outside the document's 1-{count}.", part=part, count=page_count))
        indexes.extend(i for i in range(lo - 1, hi) if i not in indexes)
    if not indexes:
        raise InputError(_("'{spec}' names no pages.", spec=spec))
    return indexes


def select_pages(document: Document, spec: str | None) -> list[int]:
    """The pages to read: all of them, or the given range, within limits.max_pages."""
    limit = document.limits.max_pages
    if spec is None:
        if document.page_count > limit:
            raise InputError(n_(
                "'{name}' has {count} pages, over the limit of {n}; choose a range of at most {n} page "
                "(e.g. --pages 1-{n}).",
                "'{name}' has {count} pages, over the limit of {n}; choose a range of at most {n} pages "
                "(e.g. --pages 1-{n}).", limit, name=document.name, count=document.page_count))
        return list(range(document.page_count))
    indexes = parse_page_range(spec, document.page_count)
    if len(indexes) > limit:
        raise InputError(_("The range {spec} has {count} pages, over the limit of {limit}; "
                           "choose a shorter range.", spec=spec, count=len(indexes), limit=limit))
    return indexes
