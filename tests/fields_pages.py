"""The project's own documents with known fields: a two-page tender notice, an invoice for
payment and an act, rendered with the bundled DejaVu Sans, each with the values printed on it.

Tests read them through the runner; ``cli.py eval`` scores a model against them:

    python -m tests.fields_pages DIR

writes DIR/TEMPLATE/NAME.png (one page) or NAME.pdf (several) with NAME.fields.json beside
it — {field name: value as printed} — one folder per template, since a run reads its
documents with one template. The identifiers are valid (python-stdnum computes the INN and
OGRN check digits, the account's control key is made to agree with its bank's BIK), except
in the document made to have a wrong INN.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from stdnum.ru import inn, ogrn

from models.fields.checks import account_key_ok
from tests.degrade import SCANS, degraded
from tests.helpers import pdf_of_images

FONT = str(Path(__file__).resolve().parent.parent / "models" / "fonts" / "DejaVuSans.ttf")
# A4 at 200 dpi, as the intake renders PDF pages; 30 px letters are ~11 pt, what a printed
# notice uses, and Tesseract reads them well.
A4 = (1654, 2339)
FONT_PX = 30
LEFT, TOP, GAP = 120, 150, 52
# Born-digital pages: A4 in points, 11 pt letters.
PDF_FONT_PT, PDF_LEFT, PDF_TOP, PDF_GAP = 11, 43, 54, 19


def _inn(first9: str) -> str:
    return first9 + inn.calc_company_check_digit(first9)


def _ogrn(first12: str) -> str:
    return first12 + ogrn.calc_check_digit(first12 + "0")  # it takes the whole number


def account_for(bik: str, pattern: str = "40702810{}00000012345") -> str:
    """A settlement account whose control key (its 9th digit) agrees with ``bik``."""
    return next(pattern.format(k) for k in range(10) if account_key_ok(pattern.format(k), bik))


# The customer (a city institution) and the supplier: computed, valid identifiers.
CUSTOMER = "ГБУ «Жилищник района Арбат»"
CUSTOMER_INN, CUSTOMER_KPP, CUSTOMER_OGRN = _inn("770412345"), "770401001", _ogrn("102770012345")
SUPPLIER = "ООО «Ромашка»"
SUPPLIER_INN, SUPPLIER_KPP = _inn("770198765"), "770101001"
# Another organisation's INN: a second page that disagrees with the first.
OTHER_INN = _inn("772934561")
# Sberbank: the bank both keep their accounts at (its real BIK and correspondent account).
BANK, BIK, CORRESPONDENT = "ПАО Сбербанк", "044525225", "30101810400000000225"
CUSTOMER_ACCOUNT = account_for(BIK)
SUPPLIER_ACCOUNT = account_for(BIK, "40702810{}38000067890")
# The customer's INN with its check digit changed: well formed, checksum wrong.
WRONG_INN = CUSTOMER_INN[:-1] + str((int(CUSTOMER_INN[-1]) + 1) % 10)


@dataclass(frozen=True)
class Document:
    name: str
    template: str
    pages: list[list[str]]
    # {field name: value as printed}; a field the document does not show is left out.
    truth: dict[str, str] = field(default_factory=dict)

    def images(self) -> list[Image.Image]:
        return [render(lines) for lines in self.pages]

    def write(self, folder: Path, scan: str = "clean") -> Path:
        """The document as PNG (one page) or a scanned PDF (several), its truths beside it;
        ``scan``: as tests/degrade.py spoils a page (a noisy scan, a phone photo, …)."""
        folder.mkdir(parents=True, exist_ok=True)
        images = [degraded(scan, image) for image in self.images()]
        name = self.name if scan == "clean" else f"{self.name}.{scan}"
        if len(images) == 1:
            path = folder / f"{name}.png"
            images[0].save(path)
        else:
            path = folder / f"{name}.pdf"
            path.write_bytes(pdf_of_images(images))
        (folder / f"{name}.fields.json").write_text(
            json.dumps(self.truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return path


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(FONT, size)


def line_box(lines: list[str], row: int, start: int = 0, end: int | None = None) -> tuple[int, int, int, int]:
    """Where characters ``start:end`` of line ``row`` are drawn on the rendered page."""
    text = lines[row]
    end = len(text) if end is None else end
    font = _font(FONT_PX)
    y = TOP + row * GAP
    x0 = LEFT + font.getlength(text[:start])
    x1 = LEFT + font.getlength(text[:end])
    _left, top, _right, bottom = font.getbbox(text)
    return round(x0), y + top, round(x1), y + bottom


def value_box(lines: list[str], value: str) -> tuple[int, int, int, int]:
    """Where ``value`` is drawn: on the first line that prints it."""
    row = next(i for i, line in enumerate(lines) if value in line)
    start = lines[row].index(value)
    return line_box(lines, row, start, start + len(value))


def render(lines: list[str]) -> Image.Image:
    """A white A4 page with ``lines`` in black, one under the other."""
    img = Image.new("RGB", A4, "white")
    draw = ImageDraw.Draw(img)
    font = _font(FONT_PX)
    for i, line in enumerate(lines):
        if LEFT + font.getlength(line) > A4[0] - 60:
            raise ValueError(f"line {i + 1} does not fit the page: {line!r}")
        draw.text((LEFT, TOP + i * GAP), line, font=font, fill="black")
    return img


def digital_pdf(document: Document) -> bytes:
    """The document as a born-digital PDF: its lines as real text, a text layer to read."""
    import pymupdf

    pdf = pymupdf.open()
    for lines in document.pages:
        page = pdf.new_page(width=595, height=842)
        for i, line in enumerate(lines):
            page.insert_text((PDF_LEFT, PDF_TOP + PDF_GAP * i), line, fontsize=PDF_FONT_PT,
                             fontname="dejavu", fontfile=FONT)
    return pdf.tobytes()


NOTICE_PAGE_1 = [
    "ИЗВЕЩЕНИЕ О ПРОВЕДЕНИИ ЭЛЕКТРОННОГО АУКЦИОНА",
    "",
    "Номер извещения: 0373200041526000145",
    f"Наименование заказчика: {CUSTOMER}",
    f"ИНН: {CUSTOMER_INN}",
    f"КПП: {CUSTOMER_KPP}",
    f"ОГРН: {CUSTOMER_OGRN}",
    "Объект закупки: Поставка офисной мебели",
    "Начальная (максимальная) цена контракта: 1 250 000,00 руб.",
    "Дата и время окончания срока подачи заявок: 20.12.2026 10:00",
    "Размер обеспечения заявки: 12 500,00 руб. (1 %)",
    # The value on the line under its label, as a narrow form column prints it.
    "Размер обеспечения исполнения контракта:",
    "5 % цены контракта, 62 500,00 руб.",
    "Адрес электронной почты: zakupki@arbat-zhil.ru",
    "Контактный телефон: +7 (495) 241-15-07",
]


def _notice_page_2(inn_value: str) -> list[str]:
    return [
        "Платежные реквизиты заказчика",
        "",
        f"Получатель: {CUSTOMER}",
        # INN and KPP under one label, as Russian bank details print them.
        f"ИНН/КПП {inn_value}/{CUSTOMER_KPP}",
        f"Банк получателя: {BANK}",
        f"БИК {BIK}",
        f"Корреспондентский счет {CORRESPONDENT}",
        f"Расчетный счет {CUSTOMER_ACCOUNT}",
        "",
        "Участником закупки может быть любое лицо,",
        "отвечающее требованиям документации.",
    ]


NOTICE_TRUTH = {
    "notice_number": "0373200041526000145", "customer_name": CUSTOMER, "customer_inn": CUSTOMER_INN,
    "customer_kpp": CUSTOMER_KPP, "customer_ogrn": CUSTOMER_OGRN, "subject": "Поставка офисной мебели",
    "initial_price": "1 250 000,00 руб.", "bid_deadline": "20.12.2026 10:00", "bid_security": "12 500,00 руб.",
    "contract_security": "62 500,00 руб.", "bik": BIK, "account": CUSTOMER_ACCOUNT,
    "contact_email": "zakupki@arbat-zhil.ru", "contact_phone": "+7 (495) 241-15-07",
}

TENDER_NOTICE = Document("tender_notice", "tender_notice", [NOTICE_PAGE_1, _notice_page_2(CUSTOMER_INN)],
                         NOTICE_TRUTH)
# Page 2 names another organisation's INN: the two pages disagree.
NOTICE_CONFLICT = Document("tender_notice_conflict", "tender_notice",
                           [NOTICE_PAGE_1, _notice_page_2(OTHER_INN)], NOTICE_TRUTH)
# A notice whose INN was misprinted: well formed, its check digit wrong.
WRONG_INN_PAGE = [line.replace(CUSTOMER_INN, WRONG_INN) for line in NOTICE_PAGE_1]
NOTICE_WRONG_INN = Document("tender_notice_wrong_inn", "tender_notice", [WRONG_INN_PAGE],
                            {**{k: v for k, v in NOTICE_TRUTH.items() if k not in ("bik", "account")},
                             "customer_inn": WRONG_INN})
# A page of a notice with none of the template's fields on it.
NOTICE_NO_FIELDS = [
    "Требования к содержанию заявки",
    "",
    "Заявка на участие в закупке должна содержать",
    "согласие участника на выполнение условий",
    "и документы, подтверждающие соответствие",
    "участника требованиям документации.",
]

INVOICE = Document("invoice", "invoice", [[
    "Счет на оплату № 245 от 15 ноября 2026 г.",
    "",
    f"Поставщик: {SUPPLIER}",
    f"ИНН/КПП {SUPPLIER_INN}/{SUPPLIER_KPP}",
    f"Банк получателя: {BANK}",
    f"БИК {BIK}",
    f"Корр. счет {CORRESPONDENT}",
    f"Расчетный счет {SUPPLIER_ACCOUNT}",
    f"Покупатель: {CUSTOMER}",
    "",
    "1. Стол офисный, 10 шт. по 12 000,00 — 120 000,00",
    "2. Кресло офисное, 10 шт. по 8 500,00 — 85 000,00",
    "",
    "Итого: 205 000,00",
    "В том числе НДС (22 %): 36 967,21",
    "Всего к оплате: 205 000,00 руб.",
]], {
    "number": "245", "date": "15 ноября 2026 г.", "supplier_name": SUPPLIER, "supplier_inn": SUPPLIER_INN,
    "supplier_kpp": SUPPLIER_KPP, "buyer_name": CUSTOMER, "bik": BIK, "account": SUPPLIER_ACCOUNT,
    "correspondent_account": CORRESPONDENT, "total": "205 000,00 руб.", "vat": "36 967,21",
})

ACT = Document("act", "act", [[
    "Акт № 17 от 28 ноября 2026 г.",
    "",
    f"Исполнитель: {SUPPLIER}",
    f"ИНН {SUPPLIER_INN}, КПП {SUPPLIER_KPP}",
    f"Заказчик: {CUSTOMER}",
    "Основание: договор № 12/26 от 01.10.2026",
    "",
    "1. Уборка территории, ноябрь 2026 — 90 000,00",
    "2. Вывоз снега, ноябрь 2026 — 60 000,00",
    "",
    "Итого: 150 000,00",
    "В том числе НДС: 27 049,18",
    "Всего оказано услуг на сумму: 150 000,00 руб.",
]], {
    "number": "17", "date": "28 ноября 2026 г.", "contractor_name": SUPPLIER, "customer_name": CUSTOMER,
    "contract_reference": "договор № 12/26 от 01.10.2026", "total": "150 000,00 руб.", "vat": "27 049,18",
})

# What ``python -m tests.fields_pages`` writes: the documents an evaluation scores.
DOCUMENTS = [TENDER_NOTICE, NOTICE_WRONG_INN, INVOICE, ACT]


def write_all(folder: Path, scans: tuple[str, ...] = ("clean",)) -> list[Path]:
    """Each document once per kind of scan, in DIR/TEMPLATE/ (NAME.png, NAME.noisy_scan.png, …)."""
    return [doc.write(folder / doc.template, scan) for doc in DOCUMENTS for scan in scans]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tests.fields_pages DIR [SCAN…]  (SCAN: " + ", ".join(SCANS) + ")")
    for written in write_all(Path(sys.argv[1]), tuple(sys.argv[2:]) or ("clean",)):
        print(written)
