"""Personal data in a customer's text: e-mail addresses, phone numbers, card numbers, IBANs.

Rules, not a model, so each decision can be read here and tested:
- **email**: `local@domain.tld`, the usual characters.
- **iban**: two letters, two check digits, 11 to 30 letters or digits (grouped by 4 or not), and the
  ISO 13616 mod-97 checksum must hold; a reference number shaped like an IBAN fails it.
- **card**: 13 to 19 digits (grouped by spaces or dashes or not) starting with 2 to 6, the first
  digits of every major network, and the Luhn checksum must hold. Longer digit runs (tracking
  numbers) are never cut into a card-sized piece.
- **phone**: international numbers (`+` or `00`, 8 to 15 digits); national numbers with a trunk
  `0` (9 to 12 digits, e.g. `030 1234567`, `06 12 34 56 78`, `07700 900123`); North American
  `(555) 123-4567` / `555-123-4567`; Spanish and Italian mobiles, which have no trunk `0`, only when
  grouped (`612 34 56 78`, `333 123 4567`); any 7 to 15 digits right after a word for phone. Never
  a date (`03.04.2024`, `2024-06-15`), and never a number right after a word for an order, invoice,
  tracking or customer number: these are what a support conversation is full of.

Spans found earlier in that order win over later ones that overlap them (an IBAN's digits are no
phone number).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

PiiKind = Literal["email", "iban", "card", "phone"]
KINDS: tuple[PiiKind, ...] = ("email", "iban", "card", "phone")

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.IGNORECASE)
# Digit groups separated by one space or dash; `(?<![\w+])` and `(?![\w-])` keep a match from
# starting or ending inside a longer code (a tracking number's tail is not a card).
CARD = re.compile(r"(?<![\w+\-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![\w-]|[ -]\d)")
PHONE = re.compile(
    r"(?<![\w+\-/.])(?<!\d[ .\-/])(?:\+|00)?(?:\(\d{1,4}\)[ .\-/]?)?\d(?:[ .\-/]?\(?\d\)?){5,16}"
    r"(?![\w\-/]|[.,]\d|[ .\-/]\d)"
)
# What IBAN needs (its check digits), and what a card or a phone number needs: six digits with at
# most three separators or brackets between each two.
TWO_DIGITS = re.compile(r"\d\d")
SIX_DIGITS = re.compile(r"\d(?:[ .\-/()]{0,3}\d){5}")
DATE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}[./-]\d{1,2}[./-]\d{1,2}")
NANP = re.compile(r"\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4}")
GROUPED_MOBILE = re.compile(r"[6-9]\d{2}(?: \d{2}){3}|[6-9]\d{2} \d{3} \d{3}|3\d{2} \d{3} \d{3,4}")
PHONE_WORDS = re.compile(
    r"(?<!\w)(?:phone|call|text|mobile|cell|tel|telefon|handy|mobil|anrufen|rückruf|zurück unter|"
    r"téléphone|portable|appel|rappel|teléfono|móvil|llam|llám|cellulare|telefono|chiam|richiam|"
    r"telefoon|bel|mobiel)"
    r"\w*\W{0,6}(?:\w+\W{1,3}){0,2}$",
    re.IGNORECASE,
)
NUMBER_WORDS = re.compile(
    r"(?<!\w)(?:order|invoice|tracking|reference|ref|customer|account|number|nr|bestell|rechnung|kunden|"
    r"sendung|auftrag|commande|facture|suivi|client|pedido|factura|seguimiento|ordine|fattura|"
    r"bestelling|factuur|encomenda|fatura|#)\w*\W{0,4}(?:n[°ºo]\.?\s*)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Span:
    """One piece of personal data: its kind and where it is in the text (`text[start:end]`)."""

    kind: PiiKind
    start: int
    end: int
    value: str


# Each message masks its conversation's history again, turns the earlier messages masked already:
# remembering the last texts' findings took masking a message with 20 turns from 0.43 ms to
# 0.02 ms here (bench/results/embedded.md measures the whole worker).
@functools.lru_cache(maxsize=8192)
def find(text: str) -> tuple[Span, ...]:
    """Every piece of personal data in `text`, in the order it appears, none overlapping."""
    taken: list[Span] = []
    for span in _candidates(text):
        if all(span.end <= other.start or span.start >= other.end for other in taken):
            taken.append(span)
    return tuple(sorted(taken, key=lambda span: span.start))


def kinds(spans: Iterable[Span]) -> tuple[PiiKind, ...]:
    """The kinds among `spans`, once each, in the fixed order of `KINDS` (equal findings, equal records)."""
    found = {span.kind for span in spans}
    return tuple(kind for kind in KINDS if kind in found)


def _candidates(text: str) -> Iterator[Span]:
    """Valid matches of each kind, kinds in order of precedence.

    A kind's pattern runs only where what it needs is in the text (an `@`, two digits in a row,
    six digits close together): most messages have no personal data, and the checks take a third
    of the time of the patterns they spare.
    """
    if "@" in text:
        for match in EMAIL.finditer(text):
            yield _span("email", match)
    if not TWO_DIGITS.search(text):
        return
    for match in IBAN.finditer(text):
        if iban_valid(match.group()):
            yield _span("iban", match)
    if not SIX_DIGITS.search(text):
        return
    for match in CARD.finditer(text):
        digits = _digits(match.group())
        if digits[0] in "23456" and luhn_valid(digits):
            yield _span("card", match)
    for match in PHONE.finditer(text):
        if _is_phone(match.group(), text[max(0, match.start() - 40) : match.start()]):
            yield _span("phone", match)


def _span(kind: PiiKind, match: re.Match[str]) -> Span:
    return Span(kind, match.start(), match.end(), match.group())


def _is_phone(candidate: str, before: str) -> bool:
    """Whether a run of digits and separators is a phone number, by its shape and the words before it."""
    digits = _digits(candidate)
    if candidate.startswith(("+", "00")):
        return 8 <= len(digits) <= 15
    if DATE.fullmatch(candidate):
        return False
    if PHONE_WORDS.search(before):
        return 7 <= len(digits) <= 15
    if NUMBER_WORDS.search(before):
        return False
    if digits.startswith("0"):
        return 9 <= len(digits) <= 12
    return bool(NANP.fullmatch(candidate) or GROUPED_MOBILE.fullmatch(candidate))


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """The ISO 13616 mod-97 checksum of an IBAN (spaces allowed, any case)."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(char for char in text if char.isdigit())
