"""Fields on the CPU: Tesseract reads the project's own rendered documents (tests/fields_pages.py)
through the runner, and the template's rules (models/fields/rules.py) find the values in its
lines; the rules themselves are tested on plain text."""

from __future__ import annotations

from pathlib import Path

import pytest

from managers import runs
from models.document import open_document
from models.fields.rules import can_find, cannot_find, find
from models.fields.template import Template
from models.text_layer import TextSpan
from tests import fields_pages as docs
from tests.helpers import encode, pdf_of_images

ROOT = Path(__file__).resolve().parent.parent
NOTICE = runs.Choice("tesseract", task="fields", template="tender_notice")
VLM_REASON = ("Tesseract's rules cannot find this field: the template gives no phrase printed before it "
              "and no identifier only it has. Read it with a VLM.")


def read(runtime, data: bytes, name: str, choice: runs.Choice = NOTICE):
    document = open_document(data, name, runtime.config.limits)
    result = runs.read_document(runtime, choice, document.pages()).result
    assert [p.error for p in result.pages] == [None] * len(result.pages)
    return result, {f.name: f for f in result.fields}


def iou(a, b) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def edges_off(a, b) -> int:
    """How far apart two boxes' left and right edges are, in pixels: Tesseract's word boxes put
    a value's within a few pixels of where it is drawn; a share of its line's box, by counting
    letters, is off by more than the width of a letter wherever letters differ in width."""
    return max(abs(a[0] - b[0]), abs(a[2] - b[2]))


# --- real Tesseract on rendered pages, through the runner ------------------------------------

FOUND_ON_NOTICE = {  # field: (page, value as printed, the value's canonical form)
    "customer_inn": (0, docs.CUSTOMER_INN, docs.CUSTOMER_INN),
    "customer_kpp": (0, docs.CUSTOMER_KPP, docs.CUSTOMER_KPP),
    "customer_ogrn": (0, docs.CUSTOMER_OGRN, docs.CUSTOMER_OGRN),
    "initial_price": (0, "1 250 000,00 руб.", "1250000.00"),
    "bid_deadline": (0, "20.12.2026 10:00", "2026-12-20T10:00"),  # a deadline keeps its time
    "bid_security": (0, "12 500,00 руб.", "12500.00"),
    "contract_security": (0, "62 500,00 руб.", "62500.00"),  # under its label, after a percentage
    "bik": (1, docs.BIK, docs.BIK),
    "account": (1, docs.CUSTOMER_ACCOUNT, docs.CUSTOMER_ACCOUNT),  # its key checked against the BIK
    "contact_email": (0, "zakupki@arbat-zhil.ru", "zakupki@arbat-zhil.ru"),
    "contact_phone": (0, "+7 (495) 241-15-07", "+74952411507"),
}


WORD_EDGE_PX = 5  # measured: word boxes 2-4 px off on this page, shares of the line up to 23


def test_a_scanned_notice_gives_its_identifiers_dates_and_sums_with_their_places(runtime):
    result, fields = read(runtime, pdf_of_images(docs.TENDER_NOTICE.images()), "notice.pdf")
    assert result.template == "tender_notice" and result.task == "fields"
    for name, (page, value, normalized) in FOUND_ON_NOTICE.items():
        got = fields[name]
        assert (got.status, got.value, got.normalized, got.page) == ("valid", value, normalized, page), name
        drawn = docs.value_box(docs.TENDER_NOTICE.pages[page], value)
        assert iou(got.bbox, drawn) >= 0.7 and edges_off(got.bbox, drawn) <= WORD_EDGE_PX, (name, got.bbox, drawn)
    # The INN is printed on both pages, on the second joined with the KPP ("ИНН/КПП a/b"):
    # one value, found on each page where it is printed.
    inn = fields["customer_inn"]
    assert [(v.page, v.value) for v in inn.found] == [(0, docs.CUSTOMER_INN), (1, docs.CUSTOMER_INN)]
    drawn = docs.value_box(docs.TENDER_NOTICE.pages[1], docs.CUSTOMER_INN)
    assert iou(inn.found[1].bbox, drawn) >= 0.7 and edges_off(inn.found[1].bbox, drawn) <= WORD_EDGE_PX, (
        inn.found[1].bbox, drawn)
    assert [v.page for v in fields["customer_kpp"].found] == [0, 1]
    # Text fields with a label are read to the end of their line; a subject has no rule.
    assert (fields["notice_number"].value, fields["customer_name"].value) == ("0373200041526000145", docs.CUSTOMER)
    assert (fields["subject"].status, fields["subject"].reason) == ("missing", VLM_REASON)


def test_pages_that_disagree_make_a_conflict(runtime):
    _result, fields = read(runtime, pdf_of_images(docs.NOTICE_CONFLICT.images()), "conflict.pdf")
    inn = fields["customer_inn"]
    assert inn.status == "conflict"
    assert [(v.page, v.value) for v in inn.found] == [(0, docs.CUSTOMER_INN), (1, docs.OTHER_INN)]
    assert fields["customer_kpp"].status == "valid"  # the pages agree on the KPP


def test_a_misprinted_inn_is_found_and_invalid(runtime):
    _result, fields = read(runtime, encode(docs.NOTICE_WRONG_INN.images()[0], "PNG"), "wrong.png")
    inn = fields["customer_inn"]
    assert (inn.status, inn.value, inn.reason) == ("invalid", docs.WRONG_INN, "the INN's check digits do not match")
    assert fields["customer_kpp"].status == "valid"


def test_a_page_without_fields_gives_every_field_missing(runtime, config):
    result, fields = read(runtime, encode(docs.render(docs.NOTICE_NO_FIELDS), "PNG"), "rules.png")
    assert "Заявка на участие" in result.pages[0].text  # the page was read, and it holds no field
    assert result.pages[0].fields == []
    assert {f.status for f in fields.values()} == {"missing"}
    assert list(fields) == [f.name for f in config.template("tender_notice").fields]
    assert fields["subject"].reason == VLM_REASON
    assert fields["customer_inn"].reason == "required, and found on no page"


def test_a_born_digital_notice_is_read_from_its_text_layer(runtime):
    import pymupdf

    data = docs.digital_pdf(docs.TENDER_NOTICE)
    result, fields = read(runtime, data, "digital.pdf")
    assert [p.source for p in result.pages] == ["text layer", "text layer"]
    pdf = pymupdf.open(stream=data)
    for name, (page, value, normalized) in FOUND_ON_NOTICE.items():
        got = fields[name]
        assert (got.status, got.value, got.normalized, got.page) == ("valid", value, normalized, page), name
        scale = result.pages[page].width / pdf[page].rect.width
        drawn = tuple(round(v * scale) for v in pdf[page].search_for(value)[0])
        # The layer's own letters: the box is where PyMuPDF finds the value, not a guess.
        assert iou(got.bbox, drawn) >= 0.95, (name, got.bbox, drawn)


@pytest.mark.parametrize("document", [docs.INVOICE, docs.ACT], ids=["invoice", "act"])
def test_invoices_and_acts_give_what_they_print(runtime, document):
    choice = runs.Choice("tesseract", task="fields", template=document.template)
    _result, fields = read(runtime, encode(document.images()[0], "PNG"), f"{document.name}.png", choice)
    assert {name: (f.status, f.value) for name, f in fields.items()} == {
        name: ("valid", value) for name, value in document.truth.items()}


def test_the_fixtures_are_written_with_their_truths(tmp_path):
    import json
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "tests.fields_pages", str(tmp_path)], check=True, cwd=ROOT)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    assert written == ["act/act.fields.json", "act/act.png", "invoice/invoice.fields.json", "invoice/invoice.png",
                       "tender_notice/tender_notice.fields.json", "tender_notice/tender_notice.pdf",
                       "tender_notice/tender_notice_wrong_inn.fields.json", "tender_notice/tender_notice_wrong_inn.png"]
    truth = json.loads((tmp_path / "tender_notice" / "tender_notice.fields.json").read_text(encoding="utf-8"))
    assert truth == docs.NOTICE_TRUTH and truth["initial_price"] == "1 250 000,00 руб."


# --- the rules on plain text -----------------------------------------------------------------

INN, KPP, OGRN, BIK = "7707083893", "773601001", "1027700132195", "044525225"


def template(*fields: dict) -> Template:
    return Template(label="T", fields=[{"label": f["name"], **f} for f in fields])


def lines(*texts: str) -> list[TextSpan]:
    return [TextSpan((0, 40 * i, 1000, 40 * i + 30), text) for i, text in enumerate(texts)]


def values(t: Template, *texts: str) -> dict[str, str]:
    return {v.name: v.value for v in find(t, lines(*texts), 0)}


IDS = template({"name": "inn", "type": "verbatim", "check": "inn", "patterns": ["ИНН"]},
               {"name": "kpp", "type": "verbatim", "check": "kpp", "patterns": ["КПП"]},
               {"name": "ogrn", "type": "verbatim", "check": "ogrn", "patterns": ["ОГРН"]},
               {"name": "bik", "type": "verbatim", "check": "bik", "patterns": ["БИК"]},
               {"name": "account", "type": "verbatim", "check": "account", "bik_field": "bik",
                "patterns": ["Расчетный счет", "р/с"]})


@pytest.mark.parametrize("text", [f"ИНН/КПП {INN}/{KPP}", f"ИНН / КПП: {INN} / {KPP}", f"ИНН {INN} КПП {KPP}",
                                  f"ИНН: {INN}, КПП: {KPP}"])
def test_an_inn_and_a_kpp_on_one_line(text):
    assert values(IDS, text) == {"inn": INN, "kpp": KPP}


def test_joined_labels_take_the_value_in_their_place():
    # Values of no particular shape: only their place says which is which.
    t = template({"name": "a", "type": "verbatim", "patterns": ["Номер"]},
                 {"name": "b", "type": "verbatim", "patterns": ["Серия"]})
    assert values(t, "Серия/Номер 4507/123456") == {"a": "123456", "b": "4507"}


def test_a_value_under_its_label():
    t = template({"name": "price", "type": "money", "patterns": ["Начальная (максимальная) цена контракта"]},
                 {"name": "deadline", "type": "date", "patterns": ["Дата окончания подачи заявок"]})
    found = values(t, "Начальная (максимальная) цена контракта:", "1 250 000 руб. 00 коп.",
                   "Дата окончания подачи заявок", "«20» декабря 2026 г. в 10:00 (МСК)")
    assert found == {"price": "1 250 000 руб. 00 коп.", "deadline": "«20» декабря 2026 г. в 10:00"}


def test_a_line_that_starts_with_a_label_is_not_the_value_above_it():
    t = template({"name": "security", "type": "money", "patterns": ["Размер обеспечения заявки"]},
                 {"name": "phone", "type": "verbatim", "check": "phone", "patterns": ["Телефон"]})
    # The sum on the phone's line is not the security's: that line has a label of its own.
    assert values(t, "Размер обеспечения заявки:", "Телефон: 8 (495) 500-55-50; 12 500,00 руб.") == {
        "phone": "8 (495) 500-55-50"}


def test_labels_ignore_case_spacing_yo_and_latin_look_alikes():
    # "OГPH" with a Latin O and P, as OCR writes it now and then; "счёт" for "счет".
    found = values(IDS, f"OГPH {OGRN}", f"инн{INN}", f"б и к {BIK}",
                   f"Расчётный  счёт {docs.CUSTOMER_ACCOUNT}")
    assert found == {"ogrn": OGRN, "inn": INN, "bik": BIK, "account": docs.CUSTOMER_ACCOUNT}


def test_a_label_is_a_whole_word():
    t = template({"name": "customer", "patterns": ["Заказчик"]},
                 {"name": "inn", "type": "verbatim", "check": "inn", "patterns": ["ИНН заказчика", "ИНН"]})
    assert values(t, f"ИНН заказчика: {INN}") == {"inn": INN}


def test_text_ends_at_the_next_label_but_not_at_a_short_word():
    t = template({"name": "supplier", "patterns": ["Поставщик"]},
                 {"name": "inn", "type": "verbatim", "check": "inn", "patterns": ["ИНН"]},
                 {"name": "basis", "patterns": ["Основание"]},
                 {"name": "date", "type": "date", "patterns": ["от"]})
    found = values(t, f"Поставщик: ООО «Ромашка», ИНН {INN}", "Основание: договор № 12/26 от 01.10.2026")
    assert found == {"supplier": "ООО «Ромашка»", "inn": INN, "basis": "договор № 12/26 от 01.10.2026",
                     "date": "01.10.2026"}


def test_types_take_their_part_of_the_line():
    t = template({"name": "number", "type": "verbatim", "patterns": ["Счет на оплату №"]},
                 {"name": "date", "type": "date", "patterns": ["от"]},
                 {"name": "security", "type": "money", "patterns": ["Обеспечение исполнения контракта"]},
                 {"name": "deadline", "type": "date", "patterns": ["Окончание подачи заявок"]},
                 {"name": "way", "type": "enum", "values": ["электронный аукцион", "запрос котировок"],
                  "patterns": ["Способ определения поставщика"]})
    found = values(t, "Счет на оплату № 245 от 15 ноября 2026 г.",
                   "Обеспечение исполнения контракта: 5 % НМЦК, что составляет 62 500,00 ₽",
                   "Окончание подачи заявок: 10:00 (МСК) 20.12.2026",
                   "Способ определения поставщика: Электронный аукцион")
    assert found == {"number": "245", "date": "15 ноября 2026 г.", "security": "62 500,00 ₽",
                     "deadline": "10:00 (МСК) 20.12.2026", "way": "Электронный аукцион"}


def test_sums_in_an_english_document():
    t = Template(label="T", language="en", fields=[
        {"name": "total", "label": "Total", "type": "money", "patterns": ["Total due"]},
        {"name": "vat", "label": "VAT", "type": "money", "patterns": ["VAT"]}])
    assert values(t, "Total due: $1,250,000.00 by 15 March 2026", "VAT (20%): 208,333.33 EUR") == {
        "total": "1,250,000.00", "vat": "208,333.33 EUR"}


def test_an_identifier_that_passes_its_check_is_preferred_and_one_that_fails_is_kept():
    # After "Расчетный счет" two accounts of 20 digits: the one whose key agrees with the BIK.
    good = docs.account_for(BIK)
    other = good[:8] + str((int(good[8]) + 1) % 10) + good[9:]  # its key does not agree
    assert values(IDS, f"БИК {BIK}", f"Расчетный счет {other} / {good}")["account"] == good
    # With no value that passes, the first of its shape: shown as invalid, not as missing.
    assert values(IDS, "ИНН 7707083894")["inn"] == "7707083894"


def test_a_field_without_a_label_is_found_by_its_shape_and_check_alone():
    t = template({"name": "email", "type": "verbatim", "check": "email"},
                 {"name": "inn", "type": "verbatim", "check": "inn"})
    assert values(t, "Пишите: zakupki@mos.ru", "Справки 1234567890 и 7707083893") == {
        "email": "zakupki@mos.ru", "inn": INN}


def test_which_fields_the_rules_cannot_find(config):
    contract = config.template("contract")
    assert sorted(cannot_find(contract)) == ["contractor_inn", "customer_inn", "date", "subject"]
    assert list(cannot_find(config.template("tender_notice"))) == ["subject"]
    assert set(cannot_find(contract).values()) == {VLM_REASON}
    assert can_find(contract.field("price"), contract) and not can_find(contract.field("customer_inn"), contract)


def test_the_reason_is_said_in_russian(config):
    from models.i18n import translate

    reason = cannot_find(config.template("tender_notice"))["subject"]
    assert translate(reason, "ru").startswith("Правила Tesseract не находят это поле")


def test_a_value_is_boxed_where_its_letters_are():
    word = TextSpan((100, 10, 300, 40), f"{INN}/{KPP}")  # one word of 20 letters, 10 px each
    line = TextSpan((0, 10, 300, 40), f"ИНН/КПП {INN}/{KPP}", (TextSpan((0, 10, 80, 40), "ИНН/КПП"), word))
    found = {v.name: v.bbox for v in find(IDS, [line], 3)}
    assert found == {"inn": (100, 10, 200, 40), "kpp": (210, 10, 300, 40)}
    bare = TextSpan((0, 0, 180, 30), f"ИНН {INN}")  # no word boxes: the value's share of the line
    assert find(IDS, [bare], 0)[0].bbox == (51, 0, 180, 30)  # letters 4 to 14 of 14


# --- the shipped templates on what real documents print --------------------------------------

def shipped(config, key: str, *texts: str) -> dict[str, tuple[str, str | None, str]]:
    """The shipped template's results on one page: field → (status, value, checked form)."""
    from models.fields.collect import collect

    t = config.template(key)
    return {r.name: (r.status, r.value, r.normalized) for r in collect(t, find(t, lines(*texts), 0))}


def test_another_fields_label_inside_a_sentence_neither_cuts_the_value_nor_is_read(config):
    found = shipped(config, "tender_notice",
                    "Начальная (максимальная) цена контракта: 1 250 000,00 руб.",
                    "Размер обеспечения заявки: 1% НМЦК, что составляет 12 500,00 руб.",
                    "Обеспечение исполнения контракта: 5 % от НМЦК – 62 500,00 ₽")
    assert found["initial_price"] == ("valid", "1 250 000,00 руб.", "1250000.00")
    assert found["bid_security"] == ("valid", "12 500,00 руб.", "12500.00")
    assert found["contract_security"] == ("valid", "62 500,00 ₽", "62500.00")


def test_a_defined_term_in_quotes_is_no_label_and_a_sum_keeps_its_kopecks_after_words(config):
    found = shipped(config, "contract",
                    "ГБУ «Жилищник района Арбат», именуемое в дальнейшем «Заказчик», в лице директора",
                    "ООО «Ромашка», именуемое в дальнейшем «Исполнитель», в лице Петрова П.П.,",
                    "4.1. Заказчик обязан принять работы.",
                    "2.1. Цена договора составляет 1 250 000 (один миллион двести пятьдесят тысяч) рублей "
                    "50 копеек, в т.ч. НДС 20%.")
    # The preamble names the parties before their terms: the rules leave them to a VLM.
    assert found["customer_name"][:2] == found["contractor_name"][:2] == ("missing", None)
    assert found["price"] == ("valid", "1 250 000 (один миллион двести пятьдесят тысяч) рублей 50 копеек",
                              "1250000.50")
    requisites = shipped(config, "contract", "Заказчик: ГБУ «Жилищник района Арбат»", "Исполнитель:",
                         "ООО «Ромашка»")
    assert (requisites["customer_name"][1], requisites["contractor_name"][1]) == (
        "ГБУ «Жилищник района Арбат»", "ООО «Ромашка»")
    # A label after a closing quote is one: only a label in quotes is a term.
    assert shipped(config, "invoice", f'Поставщик: ООО "Ромашка" ИНН {INN}')["supplier_inn"][:2] == ("valid", INN)


def test_a_1c_invoices_two_accounts_after_the_same_label_go_each_to_its_field(config):
    from tests.test_fields import settlement_account

    correspondent = "30101810400000000225"  # Sberbank's, with BIK 044525225
    found = shipped(config, "invoice",
                    f"ПАО СБЕРБАНК г. Москва БИК {BIK}",
                    f"Банк получателя Сч. № {correspondent}",
                    f"ИНН {INN} КПП {KPP} Сч. № {settlement_account(BIK)}")
    assert found["bik"][:2] == ("valid", BIK)
    assert found["account"][:2] == ("valid", settlement_account(BIK))
    assert found["correspondent_account"][:2] == ("valid", correspondent)
    # An identifier's label after a sentence's word still gives it: its shape and check decide.
    assert shipped(config, "invoice", f"Банк получателя БИК {BIK}")["bik"][:2] == ("valid", BIK)


def test_sums_of_a_billion_as_the_eis_prints_them(config):
    found = shipped(config, "tender_notice",
                    "Начальная (максимальная) цена контракта 1250000000.00 Российский рубль")
    assert found["initial_price"] == ("valid", "1250000000.00 Российский рубль", "1250000000.00")


@pytest.mark.parametrize("text", ["Обеспечение заявки: в соответствии со ст. 44 Федерального закона № 44-ФЗ",
                                  "Обеспечение заявки: 10 процентов от цены контракта",
                                  "Обеспечение заявки: 5,00 % цены контракта"])
def test_numbers_that_are_no_sums_are_not_taken_for_one(config, text):
    assert shipped(config, "tender_notice", text)["bid_security"][:2] == ("missing", None)


def test_a_sum_with_a_currency_or_kopecks_is_preferred_to_a_bare_number():
    t = template({"name": "total", "type": "money", "patterns": ["Всего к оплате"]})
    assert values(t, "Всего к оплате: 1 200 позиций на сумму 1 250 000,00 руб.") == {"total": "1 250 000,00 руб."}
    # A bare sum on its own is still one.
    assert values(t, "Всего к оплате: 1 250 000") == {"total": "1 250 000"}


def test_a_deadline_keeps_its_time_so_pages_that_differ_by_the_hour_conflict(config):
    from models.fields.collect import collect

    t = config.template("tender_notice")
    label = "Дата и время окончания срока подачи заявок: "
    found = [v for page, time in enumerate(["10:00", "18:00"])
             for v in find(t, lines(f"{label}20.12.2026 {time}"), page)]
    deadline = next(r for r in collect(t, found) if r.name == "bid_deadline")
    assert deadline.status == "conflict"
    assert [v.value for v in deadline.found] == ["20.12.2026 10:00", "20.12.2026 18:00"]
    with_seconds = find(t, lines(f"{label}20.12.2026 10:00:00 (МСК)"), 0)
    assert [v.value for v in with_seconds if v.name == "bid_deadline"] == ["20.12.2026 10:00:00"]


def test_identifiers_are_written_in_ascii_digits():
    arabic_indic = KPP.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert values(IDS, f"КПП {arabic_indic}", "БИК ٠٤٤٥٢٥٢٢٥") == {}
