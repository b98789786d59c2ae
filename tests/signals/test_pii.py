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
]


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


def test_kinds_are_listed_once_in_a_fixed_order() -> None:
    spans = pii.find("+44 20 7946 0958, a@example.com, b@example.com")

    assert pii.kinds(spans) == ("email", "phone")
