"""Personal data found by its rules, and the look-alikes a support conversation is full of."""

from __future__ import annotations

import pytest

from app.signals import pii

FOUND = [
    ("write to ada.lovelace@example.com today", "email", "ada.lovelace@example.com"),
    ("Mail: Bob.Smith+shop@mail.example.org.", "email", "Bob.Smith+shop@mail.example.org"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "iban", "DE89 3704 0044 0532 0130 00"),
    ("iban de89370400440532013000", "iban", "de89370400440532013000"),
    ("account GB82 WEST 1234 5698 7654 32, thanks", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("card 4111 1111 1111 1111 was charged", "card", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111", "card", "4111-1111-1111-1111"),
    ("Amex 378282246310005.", "card", "378282246310005"),
    ("card 4111.1111.1111.1111 declined", "card", "4111.1111.1111.1111"),
    ("my card is 5555 5555 5555\n4444 thanks", "card", "5555 5555 5555\n4444"),
    ("SSN 123-45-6789", "ssn", "123-45-6789"),
    ("my social security number is 078 05 1120", "ssn", "078 05 1120"),
    ("ssn: 078051120", "ssn", "078051120"),
    ("NI number AB123456C", "nino", "AB123456C"),
    ("my NI is ab 12 34 56 c.", "nino", "ab 12 34 56 c"),
    ("Steuer-ID 12345678995", "tax_id", "12345678995"),
    ("Steuer-ID: 12 345 678 995", "tax_id", "12 345 678 995"),
    ("numéro de sécu 2 85 03 75 123 456 88", "nir", "2 85 03 75 123 456 88"),
    ("NIR 269052A12345688", "nir", "269052A12345688"),
    ("call 4155552671", "phone", "4155552671"),
    ("reach me on 415 555 2671", "phone", "415 555 2671"),
    ("E.164: +14155552671", "phone", "+14155552671"),
    ("call +44 20 7946 0958 now", "phone", "+44 20 7946 0958"),
    ("0049 30 1234567", "phone", "0049 30 1234567"),
    ("Rufen Sie 030 1234567 an", "phone", "030 1234567"),
    ("au 06 12 34 56 78 merci", "phone", "06 12 34 56 78"),
    ("bel 06-12345678", "phone", "06-12345678"),
    ("text 07700 900123", "phone", "07700 900123"),
    ("at (555) 123-4567 please", "phone", "(555) 123-4567"),
    ("at 555-123-4567", "phone", "555-123-4567"),
    ("al 612 34 56 78", "phone", "612 34 56 78"),
    ("numero 333 123 4567", "phone", "333 123 4567"),
    ("my phone number: 4567 8912", "phone", "4567 8912"),
]

NOT_FOUND = [
    "order A-1042 placed on 12/03/2024",
    "Bestellung vom 03.04.2024",
    "delivery on 2024-06-15 between 10:30 and 12:00",
    "I paid 1.249,99 € for invoice 2024-06-00871",
    "order 4111 1111 1111 1112 (fails Luhn)",
    "tracking 9400 1000 0000 0000 0000 00",
    "Sendungsnummer 00340434161094042557",
    "UPS 1Z999AA10123456784",
    "reference DE00 1234 5678 9012 3456 78 (fails mod-97)",
    "cancel order 1234567890123",
    "order 0612345678 arrived broken",
    "facture n° 2024 0001 2345",
    "seguimiento 7350 2144 8765",
    "Kundennummer 12345678, Bestellnummer 987654321",
    "2,5 kg, 30 x 20 x 10 cm",
    "user@localhost is no address",
    "card 4111.1111.1111.1112 (fails Luhn)",
    "SSN 000-12-3456 (area 000)",
    "SSN 666-12-3456 (area 666)",
    "SSN 912-34-5678 (area 9xx)",
    "SSN 123-00-4567 (group 00)",
    "SSN 123-45-0000 (serial 0000)",
    "order 123-45-6789 shipped",
    "parcel 123456789 arrived",
    "QQ 12 34 56 C is HMRC's specimen, Q no first letter",
    "GB123456A (prefix never issued)",
    "DA123456A (D no first letter)",
    "AB123456E (suffix E)",
    "Steuer-ID 12345678994 (check digit)",
    "Steuer-ID 12345678903 (no digit repeated)",
    "NIR 2 85 03 75 123 456 87 (key)",
    "at 1718451234 (a Unix time)",
    "logged 1718451234567",
    "ref 4155552671",
    "order 5551234567 (555 is no area code)",
    "batch 20240615103000",
]

# Plain national phone numbers found only as numbers of the message's locale's region (no word for
# phone before them): (text, locale, number).
FOUND_IN_LOCALE_ONLY = [
    ("Rückfragen gern an 089 12345", "de-DE", "089 12345"),  # 8 digits: short for the trunk-0 shape
    ("mi número es 612345678", "es-ES", "612345678"),  # no trunk 0, ungrouped
    ("el fijo 912345678, por las tardes", "es_ES", "912345678"),
    ("scrivimi al 3331234567 grazie", "it-IT", "3331234567"),
    ("zadzwoń 512345678 po 17", "pl-PL", "512345678"),
    ("ring 22123456 etter kl. 16", "nb-NO", "22123456"),
]
# With a trunk 0 and 9 to 12 digits, found by their shape anywhere, and valid in their region.
FOUND_IN_LOCALE = [
    *FOUND_IN_LOCALE_ONLY,
    ("reach me on 020 7946 0958 please", "en-GB", "020 7946 0958"),
    ("erreichbar unter 030 1234567", "de-DE", "030 1234567"),
    ("joignable au 01 23 45 67 89", "fr-FR", "01 23 45 67 89"),
]

# Near misses with a locale: no number of its region, or not written as it is dialled there.
NOT_FOUND_IN_LOCALE = [
    ("ruf 30 1234567 an", "de-DE"),  # Berlin without its trunk 0
    ("el 123456789 no existe", "es-ES"),  # no Spanish range starts with 1
    ("pedido 612345678 sin llegar", "es-ES"),  # after a word for an order number
    ("at 1718451234 (a Unix time)", "de-DE"),
    ("importe 100000 pagado", "es-ES"),
    ("el 612345678 otra vez", "en-GB"),  # a Spanish mobile is no British number
    ("el 612345678 otra vez", "es"),  # a language without a region: as without a locale
]


def test_phone_region_is_the_locales_region_phonenumbers_knows() -> None:
    regions = {locale: pii.phone_region(locale) for locale in ("de-DE", "en_GB", "zh-Hant-TW", "fr_FR.UTF-8")}
    assert regions == {"de-DE": "DE", "en_GB": "GB", "zh-Hant-TW": "TW", "fr_FR.UTF-8": "FR"}
    assert [pii.phone_region(locale) for locale in ("en", "es-419", "en-XX", "", None)] == [None] * 5


@pytest.mark.parametrize(("text", "locale", "value"), FOUND_IN_LOCALE)
def test_finds_plain_national_numbers_of_the_locales_region(text: str, locale: str, value: str) -> None:
    assert [(span.kind, span.value) for span in pii.find(text, pii.phone_region(locale))] == [
        ("phone", value)
    ]


@pytest.mark.parametrize(("text", "locale"), NOT_FOUND_IN_LOCALE)
def test_national_look_alikes_are_not_phone_numbers(text: str, locale: str) -> None:
    assert pii.find(text, pii.phone_region(locale)) == ()


@pytest.mark.parametrize(("text", "locale", "value"), FOUND_IN_LOCALE_ONLY)
def test_without_a_region_they_are_not_found(text: str, locale: str, value: str) -> None:
    assert value not in {span.value for span in pii.find(text)}


def test_national_phone_check() -> None:
    assert pii.national_phone_valid("612345678", "ES")
    assert pii.national_phone_valid("0301234567", "DE")
    assert not pii.national_phone_valid("301234567", "DE")  # valid, but dialled with its trunk 0
    assert not pii.national_phone_valid("123456789", "ES")
    assert pii.national_phone_valid("4155552671", "US")


@pytest.mark.parametrize(("text", "kind", "value"), FOUND)
def test_finds_each_format(text: str, kind: str, value: str) -> None:
    assert [(span.kind, span.value) for span in pii.find(text)] == [(kind, value)]


@pytest.mark.parametrize("text", NOT_FOUND)
def test_look_alikes_are_not_personal_data(text: str) -> None:
    assert pii.find(text) == ()


def test_spans_point_into_the_text_and_do_not_overlap() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00, mail max@beispiel.de, Handy +49 151 23456789"

    spans = pii.find(text)

    assert [span.kind for span in spans] == ["iban", "email", "phone"]
    assert all(text[span.start : span.end] == span.value for span in spans)


def test_checksums() -> None:
    assert pii.luhn_valid("4111111111111111")
    assert not pii.luhn_valid("4111111111111112")
    assert pii.iban_valid("FR76 3000 6000 0112 3456 7890 189")
    assert not pii.iban_valid("FR77 3000 6000 0112 3456 7890 189")


def test_national_id_checks() -> None:
    assert pii.nir_valid("1 84 12 76 451 089 46")
    assert not pii.nir_valid("1 84 12 76 451 089 45")
    assert pii.nir_valid("2 69 05 2A 123 456 88")  # Corsica: 2A counts as 19
    assert not pii.nir_valid("2 69 05 2B 123 456 88")
    assert pii.tax_id_valid("86095742719")
    assert not pii.tax_id_valid("86095742718")
    assert not pii.tax_id_valid("11123456780")  # a digit three times in a row
    assert pii.ssn_valid("123-45-6789")
    assert not pii.ssn_valid("123456789")  # bare, without a word for it
    assert pii.ssn_valid("123456789", "SSN ")
    assert pii.nino_valid("AB123456C")
    assert not pii.nino_valid("ZZ123456C")
    assert pii.national_phone_valid("4155552671", "US")
    assert not pii.national_phone_valid("5551234567", "US")


def test_kinds_are_listed_once_in_a_fixed_order() -> None:
    spans = pii.find("+44 20 7946 0958, a@example.com, b@example.com")

    assert pii.kinds(spans) == ("email", "phone")
