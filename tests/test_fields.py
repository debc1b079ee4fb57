"""Templates, checks and collecting a document's fields (models/fields/): pure logic, with the
real libraries that do the checking (python-stdnum, dateparser, phonenumbers, email-validator)."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml

from models.config import DEFAULT_CONFIG, load_config, parse_config
from models.errors import ConfigError
from models.fields.checks import account_key_ok, check
from models.fields.collect import collect, correct
from models.fields.result import FoundValue
from models.fields.template import Template, TemplateField, json_schema

# Sberbank's own identifiers, as printed on its invoices.
INN, KPP, OGRN, BIK = "7707083893", "773601001", "1027700132195", "044525225"
CORRESPONDENT = "30101810400000000225"


def field(**kw) -> TemplateField:
    return TemplateField(name=kw.pop("name", "f"), label="F", **kw)


def settlement_account(bik: str) -> str:
    """A 20-digit account whose control key (its 9th digit) agrees with ``bik``."""
    for key in range(10):
        account = f"40702810{key}00000012345"
        if account_key_ok(account, bik):
            return account
    raise AssertionError("no control key fits")


@pytest.mark.parametrize("check_name, value, normalized", [
    ("inn", "7707083893", INN), ("inn", "7707 083 893", INN), ("inn", "500100732259", "500100732259"),
    ("ogrn", OGRN, OGRN), ("kpp", "7736 01 001", KPP), ("kpp", "7736AB001", "7736AB001"),
    ("bik", BIK, BIK), ("email", "zakupki@mos.ru", "zakupki@mos.ru"),
    ("phone", "+7 (495) 500-55-50", "+74955005550"), ("phone", "8 495 500-55-50", "+74955005550"),
])
def test_valid_identifiers_are_valid_in_one_form(check_name, value, normalized):
    checked = check(field(type="verbatim", check=check_name), value)
    assert checked.ok and checked.normalized == normalized and checked.reason is None


@pytest.mark.parametrize("check_name, value, reason", [
    ("inn", "7707083894", "the INN's check digits do not match"),
    ("inn", "77070838", "an INN has 10 digits (an organisation) or 12 (a person)"),
    ("ogrn", "1027700132196", "the OGRN's check digit does not match"),
    ("kpp", "77360100", "a KPP has 9 characters: 4 digits, 2 digits or letters, 3 digits"),
    ("bik", "144525225", "a BIK has 9 digits and begins with 04"),
    ("email", "zakupki(at)mos.ru", "not an e-mail address"),
    ("phone", "+7 (495) 500", "not a valid phone number"),
])
def test_wrong_identifiers_say_why(check_name, value, reason):
    checked = check(field(type="verbatim", check=check_name), value)
    assert not checked.ok and str(checked.reason) == reason


def test_the_inn_reason_is_said_in_russian():
    from models.i18n import translate
    reason = check(field(check="inn"), "7707083894").reason
    assert translate(reason, "ru") == "контрольная сумма ИНН не сходится"


def test_an_account_is_checked_against_its_banks_bik():
    account = settlement_account(BIK)
    f = field(type="verbatim", check="account", bik_field="bik")
    assert check(f, account, bik=BIK).ok
    other = "044525593"  # another bank: the same account's key no longer agrees
    assert str(check(f, account, bik=other).reason) == "the account's control key does not match its bank's BIK"
    assert str(check(f, account).reason) == "the account cannot be checked without its bank's valid BIK"
    assert str(check(f, account[:-1], bik=BIK).reason) == "a bank account has 20 digits"


def test_a_settlement_account_and_the_banks_correspondent_account_are_told_apart():
    settlement = field(type="verbatim", check="account", bik_field="bik")
    correspondent = field(type="verbatim", check="correspondent_account", bik_field="bik")
    # Its key is "0" + the BIK's 5th-6th digits and the account's 20 digits.
    assert check(correspondent, CORRESPONDENT, bik=BIK).normalized == CORRESPONDENT
    assert str(check(settlement, CORRESPONDENT, bik=BIK).reason) == (
        "this is a bank's correspondent account (30101…), not a settlement account")
    assert str(check(correspondent, settlement_account(BIK), bik=BIK).reason) == (
        "a correspondent account begins with 30101")
    assert not check(correspondent, CORRESPONDENT[:-1] + "6", bik=BIK).ok  # its key


def test_digits_are_ascii_digits():
    arabic_indic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    assert not check(field(type="verbatim", check="kpp"), KPP.translate(arabic_indic)).ok
    assert not check(field(type="verbatim", check="bik"), BIK.translate(arabic_indic)).ok


@pytest.mark.parametrize("value", ["«15» января 2026 г.", "15 января 2026 года", "15.01.2026", "2026-01-15",
                                   "January 15, 2026", "15 Jan 2026"])
def test_dates_written_in_russian_and_english(value):
    assert check(field(type="date"), value).normalized == "2026-01-15"


@pytest.mark.parametrize("value", ["15.01.2026 10:00", "до 10:00 (МСК) 15.01.2026", "«15» января 2026 г. в 10:00"])
def test_a_printed_time_is_part_of_the_date(value):
    # A deadline at 10:00 is not one at 18:00: the checked forms differ.
    assert check(field(type="date"), value).normalized == "2026-01-15T10:00"
    assert check(field(type="date"), value.replace("10:00", "18:00")).normalized == "2026-01-15T18:00"


@pytest.mark.parametrize("value", ["завтра", "31.02.2026", "пятнадцатое", ""])
def test_what_is_not_a_date(value):
    assert str(check(field(type="date"), value).reason) == "not a date"


@pytest.mark.parametrize("value, normalized", [
    ("1 250 000,00 руб.", "1250000.00"), ("1 250 000,00", "1250000.00"), ("12 500,50 ₽", "12500.50"),
    ("1 250 000 (один миллион двести пятьдесят тысяч) рублей 00 копеек", "1250000.00"),
    ("47,5", "47.50"), ("1,250,000.00", "1250000.00"), ("1 250 000 руб.", "1250000.00"),
    # The kopecks in words repeat the figures', or add them; a billion as the EIS prints it.
    ("1 250 000,00 (один миллион двести пятьдесят тысяч) рублей 00 копеек", "1250000.00"),
    ("2 500 000 руб. 5 коп.", "2500000.05"),
    ("1250000000.00 Российский рубль", "1250000000.00"), ("1250000000,00", "1250000000.00"),
])
def test_sums_keep_their_digits(value, normalized):
    assert check(field(type="money"), value).normalized == normalized


@pytest.mark.parametrize("value, normalized", [("47,5", "47.5"), ("47,50", "47.5"), ("1 200", "1200"),
                                               ("0,125", "0.125")])
def test_numbers_have_one_form_without_trailing_zeros(value, normalized):
    assert check(field(type="number"), value).normalized == normalized


def test_a_time_is_read_as_printed_with_seconds_a_zone_or_pm():
    date = field(type="date")
    assert check(date, "15.01.2026 10:00:00 +03:00").normalized == "2026-01-15T10:00"  # not the zone's 03:00
    assert check(date, "January 15, 2026 10:30 PM").normalized == "2026-01-15T22:30"


def test_thousands_of_digits_are_no_sum_and_no_error():
    assert str(check(field(type="money"), "1" * 5000).reason) == "not a sum or a number"


def test_a_spreadsheets_ten_ungrouped_digits_stay_an_identifier():
    from models import numbers

    assert numbers.number("1250000000", "ru") is None


def test_figures_and_words_that_name_different_kopecks_are_no_sum():
    assert str(check(field(type="money"), "1 250 000,00 рублей 50 копеек").reason) == "not a sum or a number"


def test_wrong_types_are_invalid_not_errors():
    assert str(check(field(type="integer"), "двенадцать").reason) == "not a whole number"
    assert str(check(field(type="integer"), "12,5").reason) == "not a whole number"
    assert check(field(type="integer"), "1 200").normalized == "1200"
    assert str(check(field(type="money"), "много").reason) == "not a sum or a number"
    assert str(check(field(type="enum", values=["да", "нет"]), "может быть").reason) == "not one of: да, нет"
    assert check(field(type="enum", values=["Электронный аукцион"]), "электронный аукцион").normalized == \
        "Электронный аукцион"
    assert str(check(field(), ["a", "b"]).reason) == "a list where one value was expected"
    assert str(check(field(), 12).reason) == "not a text value"


TEMPLATE = Template(label="T", fields=[
    TemplateField(name="inn", label="ИНН", type="verbatim", required=True, check="inn"),
    TemplateField(name="price", label="НМЦК", type="money"),
    TemplateField(name="bik", label="БИК", check="bik"),
    TemplateField(name="account", label="Р/с", check="account", bik_field="bik"),
    TemplateField(name="subject", label="Предмет"),
])


def test_pages_that_agree_give_one_value_from_the_first_page():
    found = [FoundValue(name="price", value="1 250 000,00 руб.", page=0, bbox=(1, 2, 3, 4)),
             FoundValue(name="price", value="1250000,00", page=2)]
    price = collect(TEMPLATE, found)[1]
    assert (price.status, price.value, price.normalized, price.page, price.bbox) == \
        ("valid", "1 250 000,00 руб.", "1250000.00", 0, (1, 2, 3, 4))
    assert [v.page for v in price.found] == [0, 2]


def test_one_sum_written_two_ways_is_one_value():
    found = [FoundValue(name="price", value="1 250 000,00 руб.", page=0), FoundValue(name="price", value="1 250 000 руб.", page=1)]
    price = collect(TEMPLATE, found)[1]
    assert (price.status, price.normalized) == ("valid", "1250000.00")


def test_text_that_differs_only_in_case_and_spacing_is_one_value():
    found = [FoundValue(name="subject", value="Поставка  мебели", page=0),
             FoundValue(name="subject", value="поставка мебели", page=1)]
    assert collect(TEMPLATE, found)[4].status == "valid"


def test_pages_that_disagree_are_a_conflict_with_every_value_kept():
    found = [FoundValue(name="price", value="1 250 000,00", page=0), FoundValue(name="price", value="1 300 000,00", page=1),
             FoundValue(name="price", value="1 250 000,00", page=3)]
    price = collect(TEMPLATE, found)[1]
    assert price.status == "conflict" and price.value is None
    assert str(price.reason) == "2 different values on pages 1, 2, 4"
    assert [v.value for v in price.found] == ["1 250 000,00", "1 300 000,00", "1 250 000,00"]


def test_missing_and_invalid_fields_say_so():
    fields = {f.name: f for f in collect(TEMPLATE, [FoundValue(name="inn", value="7707083894", page=0),
                                                    FoundValue(name="subject", value="  ", page=0)],
                                         missing={"subject": "needs a VLM"})}
    assert (fields["inn"].status, str(fields["inn"].reason)) == ("invalid", "the INN's check digits do not match")
    assert (fields["price"].status, str(fields["price"].reason)) == ("missing", "found on no page")
    assert fields["subject"].status == "missing" and fields["subject"].reason == "needs a VLM"
    assert str(collect(TEMPLATE, [])[0].reason) == "required, and found on no page"


def test_an_account_is_checked_with_the_bik_found_in_the_document():
    account = settlement_account(BIK)
    fields = collect(TEMPLATE, [FoundValue(name="account", value=account, page=0),
                                FoundValue(name="bik", value=BIK, page=1)])
    assert fields[3].status == "valid"
    wrong = collect(TEMPLATE, [FoundValue(name="account", value=account, page=0),
                               FoundValue(name="bik", value="044525593", page=0)])
    assert wrong[3].status == "invalid"


def test_a_correction_is_checked_and_keeps_the_value_read():
    fields = collect(TEMPLATE, [FoundValue(name="inn", value="7707083894", page=0)])
    fixed = correct(TEMPLATE, fields, "inn", "7707083893")
    assert (fixed[0].status, fixed[0].value, fixed[0].original, fixed[0].corrected) == \
        ("valid", "7707083893", "7707083894", True)
    again = correct(TEMPLATE, fixed, "inn", "500100732259")
    assert again[0].original == "7707083894"  # still what was read, not the first correction
    assert correct(TEMPLATE, again, "inn", "").__getitem__(0).status == "missing"


def test_correcting_the_bik_checks_its_account_again():
    account = settlement_account(BIK)
    fields = collect(TEMPLATE, [FoundValue(name="account", value=account, page=0),
                                FoundValue(name="bik", value="044525593", page=0)])
    assert fields[3].status == "invalid"
    assert correct(TEMPLATE, fields, "bik", BIK)[3].status == "valid"


def test_the_schema_holds_every_field_and_bounds_every_string():
    schema = json_schema(TEMPLATE)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"inn": "7707083893", "price": None, "bik": None, "account": None, "subject": "x"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"inn": "7707083893"}, schema)  # every key, null where absent
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**dict.fromkeys(schema["required"]), "inn": "1" * 301}, schema)


def test_the_shipped_templates_load_with_a_schema_each():
    config = load_config()
    assert {"tender_notice", "invoice", "contract", "act"} <= set(config.templates)
    for template in config.templates.values():
        jsonschema.Draft202012Validator.check_schema(json_schema(template))
    tender = config.template("tender_notice")
    assert {f.check for f in tender.fields} >= {"inn", "kpp", "ogrn", "bik", "account", "email", "phone"}


def _with_template_change(change) -> dict:
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    change(data["templates"]["invoice"]["fields"])
    return data


@pytest.mark.parametrize("change, message", [
    (lambda fs: fs[0].update(type="float"), "templates.invoice.fields.0.type"),
    (lambda fs: fs[0].update(check="snils"), "templates.invoice.fields.0.check"),
    (lambda fs: fs[0].update(colour="red"), "templates.invoice.fields.0.colour: unknown key"),
    (lambda fs: fs[0].update(type="enum"), "templates.invoice.fields.0: an enum field needs its values"),
    (lambda fs: fs[7].pop("bik_field"), "templates.invoice.fields.7: an account is checked with its bank's BIK"),
    (lambda fs: fs[7].update(bik_field="total"), "templates.invoice: account: bik_field total is not a field"),
    (lambda fs: fs.append(dict(fs[0])), "templates.invoice: field number is written twice"),
])
def test_a_wrong_template_is_refused_with_its_key_named(change, message):
    with pytest.raises(ConfigError) as err:
        parse_config(_with_template_change(change))
    assert message in str(err.value)


def test_an_unknown_template_names_the_templates_there_are():
    with pytest.raises(ConfigError, match="Unknown template 'passport'; the templates are: tender_notice, invoice"):
        load_config().template("passport")
