import struct
import zlib

import numpy as np
import pymupdf
import pytest
from PIL import Image

from models.document import open_document, open_path, parse_page_range, select_pages, sniff, to_rgb
from models.errors import InputError
from tests.helpers import encode, pdf_of_images, pdf_with_text, render_lines


@pytest.fixture
def page():
    return render_lines(["Intake test page"], size=(600, 400))


@pytest.mark.parametrize("fmt, name", [
    ("PNG", "a.png"), ("JPEG", "a.jpg"), ("BMP", "a.bmp"), ("WEBP", "a.webp"), ("TIFF", "a.tiff"),
])
def test_every_image_format_becomes_one_rgb_page(page, limits, fmt, name):
    doc = open_document(encode(page, fmt), name, limits)
    assert (doc.kind, doc.page_count) == (sniff(encode(page, fmt)), 1)
    loaded = doc.page(0)
    assert loaded.image.mode == "RGB" and loaded.image.size == (600, 400)


def test_every_tiff_frame_is_a_page(limits):
    frames = [render_lines([f"frame {i}"], size=(300, 200)) for i in range(3)]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])
    doc = open_document(data, "scan.tif", limits)
    assert doc.page_count == 3
    assert [p.load().index for p in doc.pages()] == [0, 1, 2]


def test_pdf_pages_are_rendered_at_200_dpi(limits):
    doc = open_document(pdf_of_images([render_lines(["one"]), render_lines(["two"])]), "scan.pdf", limits)
    assert doc.page_count == 2
    assert doc.page(1).image.size == (1653, 2339)  # 595×842 pt at 200 dpi
    assert doc.page(0).text_layer is None


def test_born_digital_pdf_keeps_its_text_layer(limits):
    doc = open_document(pdf_with_text([["Договор поставки № 7", "Delivery contract"]]), "c.pdf", limits)
    layer = doc.page(0).text_layer
    assert [span.text for para in layer for span in para] == ["Договор поставки № 7", "Delivery contract"]
    x0, y0, x1, y1 = layer[0][0].bbox
    assert 130 < x0 < 150 and y0 < y1 < 240  # 50 pt from the left at 200 dpi


def test_exif_orientation_is_applied(limits):
    img = Image.new("RGB", (400, 200), "white")
    img.paste((255, 0, 0), (0, 0, 40, 40))  # red mark top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    doc = open_document(encode(img, "JPEG", exif=exif, quality=95), "photo.jpg", limits)
    shown = doc.page(0).image
    assert shown.size == (200, 400)
    r, g, b = shown.getpixel((180, 20))  # the mark ends up top-right
    assert r > 200 and g < 60 and b < 60


def test_cmyk_jpeg_becomes_rgb(limits):
    img = Image.new("CMYK", (100, 100), (0, 0, 0, 0))  # no ink: white paper
    img.paste((0, 255, 255, 0), (0, 0, 50, 100))  # magenta + yellow: red
    rgb = open_document(encode(img, "JPEG", quality=95), "cmyk.jpg", limits).page(0).image
    assert rgb.mode == "RGB"
    assert min(rgb.getpixel((80, 50))) > 240
    r, g, b = rgb.getpixel((20, 50))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_grayscale_is_scaled_not_clipped(limits):
    arr = np.full((50, 50), 32768, dtype=np.uint16)
    arr[:, :25] = 65535
    img = Image.fromarray(arr)
    rgb = open_document(encode(img, "PNG"), "deep.png", limits).page(0).image
    assert rgb.getpixel((40, 10)) == (127, 127, 127)
    assert rgb.getpixel((10, 10)) == (255, 255, 255)


def test_16_bit_tiff(limits):
    img = Image.fromarray(np.full((40, 40), 16384, dtype=np.uint16))
    rgb = open_document(encode(img, "TIFF"), "deep.tif", limits).page(0).image
    assert rgb.getpixel((5, 5)) == (63, 63, 63)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_lands_on_white(limits, mode):
    img = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (0, 0, 30, 60))
    if mode == "LA":
        img = img.convert("LA")
    if mode == "P":
        img = img.convert("P")  # palette PNG with a transparent entry
        img.info["transparency"] = img.getpixel((50, 50))
    rgb = open_document(encode(img, "PNG", transparency=img.info.get("transparency"))
                        if mode == "P" else encode(img, "PNG"), "t.png", limits).page(0).image
    assert rgb.getpixel((50, 30)) == (255, 255, 255)
    assert rgb.getpixel((10, 30)) == (0, 0, 0)


def test_grayscale_and_bilevel(limits):
    for mode in ("L", "1"):
        img = Image.new(mode, (30, 30), 0)
        assert open_document(encode(img, "PNG"), "g.png", limits).page(0).image.getpixel((1, 1)) == (0, 0, 0)


def test_to_rgb_float_image():
    img = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), "F")
    assert to_rgb(img).getpixel((0, 0)) == (127, 127, 127)


# --- bad input: one sentence, no traceback -----------------------------------------------

def _png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb's signature."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def bad_inputs():
    page = render_lines(["Intake test page"], size=(600, 400))
    png = encode(page, "PNG")
    jpeg = encode(page, "JPEG")
    encrypted = pymupdf.open(stream=pdf_of_images([page]), filetype="pdf").tobytes(
        encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")
    return {
        "empty": (b"", "a.png", "is empty"),
        "truncated png": (png[: len(png) // 2], "a.png", "truncated or damaged"),
        "truncated jpeg": (jpeg[: len(jpeg) // 3], "a.jpg", "truncated or damaged"),
        "text named png": (b"hello, this is not an image\n" * 10, "a.png", "is not a PNG file: it holds text"),
        "pdf named png": (pdf_of_images([page]), "a.png", "is named as PNG but holds PDF data"),
        "gif": (encode(page, "GIF"), "a.gif", "holds a GIF image"),
        "docx": (b"PK\x03\x04" + b"\0" * 100, "a.docx", "ZIP archive"),
        "bomb": (_png_with_size(30000, 30000), "bomb.png", "'bomb.png' is over the 120 Mpx limit (limits.max_image_pixels)"),
        "encrypted pdf": (encrypted, "locked.pdf", "is password-protected"),
        "broken pdf": (b"%PDF-1.7\n" + b"\x00garbage" * 50, "broken.pdf", "broken PDF"),
        "empty-bodied png header": (b"\x89PNG\r\n\x1a\n", "x.png", "is damaged"),
    }


def test_the_intake_keeps_pillows_own_limit_and_refuses_by_its_own(limits):
    """Pillow's decompression-bomb limit protects every other image the process opens (a
    history thumbnail, a crop): reading documents must not switch it off."""
    default = Image.MAX_IMAGE_PIXELS
    open_document(encode(render_lines(["x"], size=(300, 200)), "PNG"), "small.png", limits).page(0)
    with pytest.raises(InputError) as err:
        open_document(_png_with_size(13000, 10000), "big.png", limits)
    assert str(err.value) == ("'big.png' is 13000×10000 pixels (130 Mpx), over the 120 Mpx limit "
                              "(limits.max_image_pixels); scale it down and upload it again.")
    roomy = limits.model_copy(update={"max_image_pixels": 250_000_000})
    with pytest.raises(InputError) as err:
        open_document(_png_with_size(14000, 14000), "huge.png", roomy)
    assert str(err.value) == ("'huge.png' is over 179 Mpx, the most any image is decoded to, whatever "
                              "limits.max_image_pixels allows; scale it down and upload it again.")
    assert Image.MAX_IMAGE_PIXELS == default == 89_478_485  # Pillow's own default


@pytest.mark.parametrize("case", list(bad_inputs()))
def test_bad_input_gives_one_sentence(limits, case):
    data, name, expected = bad_inputs()[case]
    with pytest.raises(InputError) as err:
        doc = open_document(data, name, limits)
        doc.page(0)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message and "Traceback" not in message


def test_file_over_the_size_limit(page, limits):
    small = limits.model_copy(update={"max_upload_mb": 1})
    with pytest.raises(InputError, match="over the 1 MB limit"):
        open_document(b"\x89PNG\r\n\x1a\n" + b"\0" * 2**21, "big.png", small)


def test_path_checks_size_before_reading(tmp_path, limits):
    big = tmp_path / "big.pdf"
    with open(big, "wb") as f:
        f.truncate(3 * 2**20)
    with pytest.raises(InputError, match="3 MB, over the 1 MB limit"):
        open_path(big, limits.model_copy(update={"max_upload_mb": 1}))
    with pytest.raises(InputError, match="does not exist"):
        open_path(tmp_path / "missing.png", limits)
    with pytest.raises(InputError, match="is a folder"):
        open_path(tmp_path, limits)


def test_pdf_with_only_an_owner_password_opens(page, limits):
    data = pymupdf.open(stream=pdf_of_images([page]), filetype="pdf").tobytes(
        encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="")
    assert open_document(data, "restricted.pdf", limits).page_count == 1


def test_poster_sized_pdf_page_is_rendered_smaller_with_a_warning(limits):
    pdf = pymupdf.open()
    pdf.new_page(width=72 * 30, height=72 * 30)  # 30 × 30 inches
    doc = open_document(pdf.tobytes(), "poster.pdf", limits.model_copy(update={"max_image_pixels": 4_000_000}))
    page = doc.page(0)
    assert page.image.width * page.image.height <= 4_000_000
    assert "rendered at 66 dpi" in page.warnings[0]


def test_truncated_multipage_tiff(limits):
    frames = [render_lines([f"frame {i}"], size=(300, 200)) for i in range(2)]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    with pytest.raises(InputError, match="'scan.tif' is damaged"):
        open_document(data[:-200], "scan.tif", limits)


# --- page ranges ---------------------------------------------------------------------------

def test_page_ranges():
    assert parse_page_range("1-3", 10) == [0, 1, 2]
    assert parse_page_range("2, 5-6,2", 10) == [1, 4, 5]
    assert parse_page_range("8-", 10) == [7, 8, 9]
    for bad, message in [("0-3", "outside"), ("5-2", "outside"), ("a-b", "not a page range"),
                         ("11", "outside"), (",", "names no pages")]:
        with pytest.raises(InputError, match=message):
            parse_page_range(bad, 10)


def test_long_document_needs_a_range(limits):
    blank = Image.new("RGB", (50, 50), "white")
    doc = open_document(pdf_of_images([blank] * 12), "long.pdf", limits.model_copy(update={"max_pages": 5}))
    with pytest.raises(InputError, match="has 12 pages, over the limit of 5; choose a range .*--pages 1-5"):
        select_pages(doc, None)
    assert select_pages(doc, "6-10") == [5, 6, 7, 8, 9]
    with pytest.raises(InputError, match="has 6 pages, over the limit of 5"):
        select_pages(doc, "1-6")
