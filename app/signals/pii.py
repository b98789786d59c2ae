"""Personal data in a customer's texts: found (e-mail addresses, phone, card and national id
numbers, IBANs), and masked with placeholders where the texts leave for the remote LLM.

Found by rules, not a model, so each decision can be read here and tested:
- **email**: `local@domain.tld`, the usual characters.
- **iban**: two letters, two check digits, 11 to 30 letters or digits (grouped by 4 or not), and the
  ISO 13616 mod-97 checksum must hold; a reference number shaped like an IBAN fails it.
- **nir** (French INSEE number): 13 digits starting with 1, 2, 3, 4, 7 or 8 (Corsica's `2A`/`2B`
  allowed), grouped as written on the carte Vitale or not, and a 2-digit key, 97 - n mod 97.
- **tax_id** (German Steuer-ID): 11 digits (`12 345 678 903` or bare), not starting with 0; in
  the first ten one digit appears twice or three times (never three in a row) and every other at
  most once, and the last is the ISO 7064 MOD 11,10 check digit.
- **ssn** (US): `123-45-6789`; with spaces or bare only right after a word for it (`SSN`,
  `social security`). Never area 000, 666 or 900-999, group 00 or serial 0000.
- **nino** (UK National Insurance number): `AB 12 34 56 C` or `AB123456C`: the prefix's first
  letter not D, F, I, Q, U or V, its second not D, F, I, O, Q, U or V, never BG, GB, KN, NK, NT,
  TN or ZZ (so HMRC's specimen `QQ 12 34 56 C` is no one's), and a suffix A to D.
- **card**: 13 to 19 digits (grouped by spaces, dashes, dots or a line break, or not) starting
  with 2 to 6, the first digits of every major network, and the Luhn checksum must hold. Longer
  digit runs (tracking numbers) are never cut into a card-sized piece.
- **phone**: international numbers (`+` or `00`, 8 to 15 digits); national numbers with a trunk
  `0` (9 to 12 digits, e.g. `030 1234567`, `06 12 34 56 78`, `07700 900123`); North American
  `(555) 123-4567` / `555-123-4567`, and plain `4155552671` / `415 555 2671` when the
  `phonenumbers` library knows the number as a valid US one (an assigned area code and exchange; it
  costs about 40 µs, paid only by ten digits of that shape); Spanish and Italian mobiles, which
  have no trunk `0`, only when grouped (`612 34 56 78`, `333 123 4567`); any 7 to 15 digits right
  after a word for phone. Given the region of the message's locale (`es-ES`: `ES`), also any other
  run of digits that `phonenumbers` knows as a valid number of that region written as it is dialled
  there, with its trunk prefix where it has one (`612345678` and `3331234567` with `es-ES` and
  `it-IT`, `089 12345` with `de-DE`, but not `30 1234567`); it costs about 30 µs, paid only by the
  runs the rules above leave. Where numbers have no trunk prefix (Spain, Poland), a bare number in
  a range in use is taken for a phone: masking too much is the safe side. Never a date
  (`03.04.2024`, `2024-06-15`), and never a number right after a word for an order, invoice,
  tracking or customer number: these are what a support conversation is full of.

Spans found earlier in that order win over later ones that overlap them (an IBAN's digits are no
phone number, a NIR's are no card's).

**Masking**: placeholders for personal data in what leaves for the remote LLM, and the originals
put back after. `mask(texts)` masks a conversation's texts together (the message and its history
turns, and for the worker's prompt the profile's fields and the message's metadata:
`prompt_texts`), so a value has one placeholder in all of them: `[EMAIL_1]` in the history, the
profile and the message is the same address, and the LLM can refer to it. `Masked.restore` puts
the originals back into the answer; a placeholder the LLM made up stays as it is, since there is
nothing to put back. The tools the LLM calls (`MaskedTools`) get the originals in their
arguments, and their results are masked into the same placeholders (`Masked.add`).
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

from app.llm.tool_calls import ToolCall, ToolResult, ToolRunner
from app.schemas import CustomerMessage, HistoryTurn
from app.signals.noise import without_noise

PiiKind = Literal["email", "iban", "nir", "tax_id", "ssn", "nino", "card", "phone"]
KINDS: tuple[PiiKind, ...] = ("email", "iban", "nir", "tax_id", "ssn", "nino", "card", "phone")

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.IGNORECASE)
# Digit groups separated by one space, dash, dot or line break; `(?<![\w+])` and `(?![\w-])` keep a
# match from starting or ending inside a longer code (a tracking number's tail is not a card).
CARD = re.compile(r"(?<![\w+\-])(?<!\d[ .\-\n])\d(?:(?:[ .\-]|\r?\n)?\d){12,18}(?![\w-]|[ .\-\n]\d)")
# A national id is never part of a longer run of digits (in groups or not) either.
_ALONE_BEFORE, _ALONE_AFTER = r"(?<![\w+\-])(?<!\d[ .\-])", r"(?![\w-]|[ .\-]\d)"
NIR = re.compile(
    rf"{_ALONE_BEFORE}[1-478] ?\d\d ?\d\d ?(?:\d\d|2[AB]) ?\d{{3}} ?\d{{3}} ?\d\d{_ALONE_AFTER}",
    re.IGNORECASE,
)
TAX_ID = re.compile(rf"{_ALONE_BEFORE}[1-9]\d ?\d{{3}} ?\d{{3}} ?\d{{3}}{_ALONE_AFTER}")
SSN = re.compile(rf"{_ALONE_BEFORE}\d{{3}}([- ]?)\d\d\1\d{{4}}{_ALONE_AFTER}")
NINO = re.compile(r"(?<![\w-])[A-Z]{2} ?\d\d ?\d\d ?\d\d ?[A-D](?![\w-])", re.IGNORECASE)
SSN_WORDS = re.compile(r"(?<!\w)(?:ssn|social security)\w*\W{0,6}(?:\w+\W{1,3}){0,2}$", re.IGNORECASE)
NINO_FIRST, NINO_SECOND = frozenset("DFIQUV"), frozenset("DFIOQUV")
NINO_UNUSED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
CORSICA = {"2A": "19", "2B": "18"}  # the NIR's departments with a letter, as its key counts them
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
# A US number written plainly: area code and exchange start with 2 to 9 (a Unix time never does).
PLAIN_NANP = re.compile(r"[2-9]\d\d( ?)[2-9]\d\d\1\d{4}")
LOCALE_SUBTAGS = re.compile(r"[-_.@]")  # `fr_FR.UTF-8` and `sr-Latn-RS` as well as `de-DE`
GROUPED_MOBILE = re.compile(r"[6-9]\d{2}(?: \d{2}){3}|[6-9]\d{2} \d{3} \d{3}|3\d{2} \d{3} \d{3,4}")
PHONE_WORDS = re.compile(
    r"(?<!\w)(?:phone|call|text|mobile|cell|tel|telefon|handy|mobil|anrufen|rückruf|zurück unter|"
    r"téléphone|portable|appel|rappel|teléfono|móvil|llam|llám|cellulare|telefono|chiam|richiam|"
    r"telefoon|bel|mobiel)"
    # Words between it and the number, but no other number: that one's the phone.
    r"\w*\W{0,6}(?:[^\W\d]+\W{1,3}){0,2}$",
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
def find(text: str, region: str | None = None) -> tuple[Span, ...]:
    """Every piece of personal data in `text`, in the order it appears, none overlapping; `region`
    (`phone_region`) adds the plain national phone numbers of that region."""
    taken: list[Span] = []
    for span in _candidates(text, region):
        if all(span.end <= other.start or span.start >= other.end for other in taken):
            taken.append(span)
    return tuple(sorted(taken, key=lambda span: span.start))


def kinds(spans: Iterable[Span]) -> tuple[PiiKind, ...]:
    """The kinds among `spans`, once each, in the fixed order of `KINDS` (equal findings, equal records)."""
    found = {span.kind for span in spans}
    return tuple(kind for kind in KINDS if kind in found)


def phone_region(locale: str | None) -> str | None:
    """The region of a locale (`de-DE`, `en_GB`, `zh-Hant-TW`) whose national phone numbers
    `phonenumbers` knows, or None (`en`, `es-419`, no locale)."""
    for subtag in LOCALE_SUBTAGS.split(locale or "")[1:]:
        if len(subtag) == 2 and subtag.upper() in phonenumbers.SUPPORTED_REGIONS:
            return subtag.upper()
    return None


def _candidates(text: str, region: str | None) -> Iterator[Span]:
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
    for kind, pattern, valid in NATIONAL_IDS:
        for match in pattern.finditer(text):
            if valid(match.group(), text[max(0, match.start() - 40) : match.start()]):
                yield _span(kind, match)
    for match in CARD.finditer(text):
        digits = _digits(match.group())
        if digits[0] in "23456" and luhn_valid(digits):
            yield _span("card", match)
    for match in PHONE.finditer(text):
        if _is_phone(match.group(), text[max(0, match.start() - 40) : match.start()], region):
            yield _span("phone", match)


def _span(kind: PiiKind, match: re.Match[str]) -> Span:
    return Span(kind, match.start(), match.end(), match.group())


def _is_phone(candidate: str, before: str, region: str | None) -> bool:
    """Whether a run of digits and separators is a phone number, by its shape, the words before it
    and, failing those, as a national number of `region`."""
    digits = _digits(candidate)
    if SSN_WORDS.search(before):  # named a social security number: it is none, or no valid one
        return False
    if candidate.startswith(("+", "00")):
        return 8 <= len(digits) <= 15
    if DATE.fullmatch(candidate):
        return False
    if PHONE_WORDS.search(before):
        return 7 <= len(digits) <= 15
    if NUMBER_WORDS.search(before):
        return False
    if digits.startswith("0") and 9 <= len(digits) <= 12:
        return True
    if PLAIN_NANP.fullmatch(candidate):
        shaped = national_phone_valid(digits, "US")  # an area code and exchange in use
    else:
        shaped = bool(NANP.fullmatch(candidate) or GROUPED_MOBILE.fullmatch(candidate))
    return shaped or (region is not None and national_phone_valid(digits, region))


def national_phone_valid(digits: str, region: str) -> bool:
    """Whether digits are a valid number of `region` by libphonenumber's metadata, written as it is
    dialled there: with the trunk prefix if the region has one (`0301234567` in DE, not `301234567`,
    which would be the same number)."""
    try:
        number = phonenumbers.parse(digits, region)
    except NumberParseException:
        return False
    if not phonenumbers.is_valid_number(number):
        return False
    return _digits(phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)) == digits


def nir_valid(candidate: str, _before: str = "") -> bool:
    """The key of a French INSEE number: 97 - (the first 13 digits mod 97), Corsica's 2A and 2B
    counted as 19 and 18."""
    compact = candidate.replace(" ", "").upper()
    department = CORSICA.get(compact[5:7], compact[5:7])
    if not department.isdigit():  # a letter anywhere but in Corsica's department
        return False
    return int(compact[13:]) == 97 - int(compact[:5] + department + compact[7:13]) % 97


def tax_id_valid(candidate: str, _before: str = "") -> bool:
    """A German Steuer-ID's structure (one digit of the first ten repeated, twice or three times
    but not three in a row) and its ISO 7064 MOD 11,10 check digit."""
    digits = candidate.replace(" ", "")
    repeated = [(digit, times) for digit, times in Counter(digits[:10]).items() if times > 1]
    if len(repeated) != 1 or repeated[0][1] > 3 or repeated[0][0] * 3 in digits[:10]:
        return False
    product = 10
    for digit in digits[:10]:
        total = (int(digit) + product) % 10 or 10
        product = total * 2 % 11
    return (11 - product) % 10 == int(digits[10])


def ssn_valid(candidate: str, before: str = "") -> bool:
    """A US Social Security number's ranges (no area 000, 666 or 9xx, group 00, serial 0000); only
    dashed unless a word for it comes right before."""
    digits = _digits(candidate)
    if not SSN_WORDS.search(before) and ("-" not in candidate or NUMBER_WORDS.search(before)):
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def nino_valid(candidate: str, _before: str = "") -> bool:
    """A UK National Insurance number's prefix rules (HMRC's NIM39110)."""
    prefix = candidate[:2].upper()
    return prefix[0] not in NINO_FIRST and prefix[1] not in NINO_SECOND and prefix not in NINO_UNUSED


# In order of precedence; each check is given the match and the 40 characters before it.
NATIONAL_IDS: tuple[tuple[PiiKind, re.Pattern[str], Callable[[str, str], bool]], ...] = (
    ("nir", NIR, nir_valid),
    ("tax_id", TAX_ID, tax_id_valid),
    ("ssn", SSN, ssn_valid),
    ("nino", NINO, nino_valid),
)


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


# Masking: placeholders, and the originals put back.

PLACEHOLDER = re.compile(rf"\[({'|'.join(kind.upper() for kind in KINDS)})_(\d+)\]")
# The longest tail of a stream chunk that may still become a placeholder (`[TAX_ID_1]` the longest
# name): held back until the next chunk says, so a placeholder split across chunks is restored whole.
PARTIAL_PLACEHOLDER = re.compile(r"\[(?:[A-Z]{0,6}(?:_[A-Z]{0,2})?(?:_\d*)?)?$")
KIND_NAMED: dict[str, PiiKind] = {kind.upper(): kind for kind in KINDS}


@dataclass(frozen=True)
class Masked:
    """Texts with their personal data replaced, and what each placeholder stands for."""

    texts: tuple[str, ...]
    originals: dict[str, str]
    """What each placeholder stands for; `add` adds to it, for every restorer of the conversation."""
    kinds: tuple[PiiKind, ...]

    def restore(self, text: str) -> str:
        """`text` with each known placeholder replaced by the original it stands for."""
        if not self.originals:
            return text
        return PLACEHOLDER.sub(lambda match: self.originals.get(match.group(), match.group()), text)

    def restore_json(self, text: str) -> str:
        """`restore` for JSON text: each original escaped as a JSON string's content."""
        if not self.originals:
            return text
        return PLACEHOLDER.sub(
            lambda match: json.dumps(self.originals.get(match.group(), match.group()))[1:-1], text
        )

    def add(self, text: str, locale: str | None = None) -> str:
        """`text` (more of the conversation, such as a tool's result) masked as `mask` would have
        masked it with the others: a value masked before gets its placeholder, a new one the next
        free, which `originals` now holds, so the answer's restoring puts it back."""
        spans = find(text, phone_region(locale))
        if not spans:
            return text
        by_value = {
            (_kind_of(placeholder), _identity(_kind_of(placeholder), value)): placeholder
            for placeholder, value in self.originals.items()
        }
        taken = {match.group() for said in (*self.texts, text) for match in PLACEHOLDER.finditer(said)}
        return _replaced_spans(text, spans, by_value, self.originals, taken | set(self.originals))

    def onto(
        self, message: CustomerMessage, history: Sequence[HistoryTurn]
    ) -> tuple[CustomerMessage, list[HistoryTurn]]:
        """The message and its history with these texts, masked as `mask([message.text, *turns])`
        masked them; what nothing was masked in is returned as it is, not copied."""
        turns = zip(history, self.texts[1:], strict=True)
        return (
            _with_text(message, self.texts[0]),
            [_with_text(turn, text) for turn, text in turns],
        )

    def prompt_parts(
        self, message: CustomerMessage, history: Sequence[HistoryTurn], customer: Mapping[str, str]
    ) -> tuple[CustomerMessage, list[HistoryTurn], Mapping[str, str]]:
        """The message (its text and metadata), its history and the customer's profile with these
        texts, as `mask(prompt_texts(message, history, customer))` masked them."""
        turns_end = 1 + len(history)
        fields_end = turns_end + len(customer)
        asked, turns = Masked(self.texts[:turns_end], self.originals, self.kinds).onto(message, history)
        fields = self.texts[turns_end:fields_end]
        if any(text != str(value) for text, value in zip(fields, customer.values(), strict=True)):
            customer = dict(zip(customer, fields, strict=True))
        leaves = iter(self.texts[fields_end:])
        metadata = _replaced(message.metadata, leaves)
        if metadata is not message.metadata:
            asked = asked.model_copy(update={"metadata": metadata})
        return asked, turns, customer

    def restorer(self) -> StreamRestorer:
        """A restorer for an answer that arrives in chunks."""
        return StreamRestorer(self)


Texted = TypeVar("Texted", CustomerMessage, HistoryTurn)


def _with_text(item: Texted, text: str) -> Texted:
    return item if item.text == text else item.model_copy(update={"text": text})


class StreamRestorer:
    """Restores a streamed answer chunk by chunk, holding back a placeholder cut in two."""

    def __init__(self, masked: Masked) -> None:
        self._masked = masked
        self._held = ""

    def feed(self, chunk: str) -> str:
        """The restored text that can be shown now; a possible placeholder's start waits."""
        if not self._masked.originals:  # nothing to put back: every chunk as it comes
            return chunk
        text = self._held + chunk
        partial = PARTIAL_PLACEHOLDER.search(text)
        cut = partial.start() if partial else len(text)
        self._held = text[cut:]
        return self._masked.restore(text[:cut])

    def flush(self) -> str:
        """What is still held back, at the end of the stream."""
        held, self._held = self._held, ""
        return self._masked.restore(held)


def mask(texts: Sequence[str], locale: str | None = None) -> Masked:
    """Replace the personal data in `texts` with placeholders, one per distinct value; with the
    message's `locale`, the plain national phone numbers of its region too (`phone_region`).

    Values are told apart by what they are, not how they are written (`Ada@Example.com` and
    `ada@example.com` are one address; a card with or without spaces one card); the original is
    the first way it was written. Numbers already used by placeholder-like text the customer typed
    are skipped, so restoring never replaces something the customer wrote.
    """
    taken = {match.group() for text in texts if "[" in text for match in PLACEHOLDER.finditer(text)}
    region = phone_region(locale)
    by_value: dict[tuple[PiiKind, str], str] = {}
    originals: dict[str, str] = {}
    found: list[Span] = []
    masked = []
    for text in texts:
        spans = find(text, region)
        found += spans
        masked.append(_replaced_spans(text, spans, by_value, originals, taken) if spans else text)
    return Masked(texts=tuple(masked), originals=originals, kinds=kinds(found))


def _replaced_spans(
    text: str,
    spans: Sequence[Span],
    by_value: dict[tuple[PiiKind, str], str],
    originals: dict[str, str],
    taken: set[str],
) -> str:
    """`text` with its `spans` replaced by placeholders: a value's own in `by_value`, or the next
    one not `taken`, added to `by_value` and `originals`."""
    pieces = []
    position = 0
    for span in spans:
        key = (span.kind, _identity(span.kind, span.value))
        if key not in by_value:
            by_value[key] = _next_placeholder(span.kind, taken)
            originals[by_value[key]] = span.value
        pieces += [text[position : span.start], by_value[key]]
        position = span.end
    return "".join([*pieces, text[position:]])


def prompt_texts(
    message: CustomerMessage, history: Sequence[HistoryTurn], customer: Mapping[str, str]
) -> list[str]:
    """What of a message's conversation reaches the LLM's prompt, for `mask`: the message's text,
    its history's, the profile's fields and each value in the message's metadata, in the order
    `Masked.prompt_parts` reads them back."""
    return [
        message.text,
        *(turn.text for turn in history),
        *(str(value) for value in customer.values()),
        *_leaves(message.metadata),
    ]


def _leaves(value: Any) -> Iterator[str]:
    """The values in a JSON-like object, depth first, as text (a phone number may be a number)."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _replaced(value: Any, masked: Iterator[str]) -> Any:
    """`value` with its leaves (`_leaves`) taken from `masked` in turn; what is unchanged is the
    same object."""
    if isinstance(value, Mapping):
        items = {key: _replaced(item, masked) for key, item in value.items()}
        return value if all(items[key] is item for key, item in value.items()) else items
    if isinstance(value, list | tuple):
        replaced = [_replaced(item, masked) for item in value]
        return value if all(new is old for new, old in zip(replaced, value, strict=True)) else replaced
    if value is None or isinstance(value, bool):
        return value
    text = next(masked)
    return value if text == str(value) else text


def wording(masked_text: str) -> str:
    """A masked text as the language and intent models read it: without its placeholders and its
    noise (`noise.without_noise`: signature, links, words with digits), its words separated by
    single spaces.

    An order number or an address says nothing about what a customer wants or the language they
    write in, and messages that differ only in them (most of a support stream's) read alike: the
    models remember what they found per wording (`SignalModels.read`).
    """
    return " ".join(without_noise(PLACEHOLDER.sub(" ", masked_text)).split())


def _identity(kind: PiiKind, value: str) -> str:
    """What makes two values the same: an address regardless of case, a number its digits."""
    if kind == "email":
        return value.lower()
    return "".join(char for char in value.upper() if char.isalnum())


def _kind_of(placeholder: str) -> PiiKind:
    """The kind of value a placeholder of `mask` (`[TAX_ID_1]`) stands for."""
    return KIND_NAMED[placeholder[1 : placeholder.rindex("_")]]


class MaskedTools:
    """The tools of one reply as the LLM's side of the masking sees them (promise 7): a call's
    arguments get the originals back (a placeholder means nothing to an order system), and its
    result is masked into the conversation's placeholders before it leaves for the LLM."""

    def __init__(self, tools: ToolRunner, masked: Masked, locale: str | None) -> None:
        self._tools, self._masked, self._locale = tools, masked, locale

    def declarations(self) -> list[dict[str, Any]]:
        """The tools' declarations, as they are."""
        return self._tools.declarations()

    async def run(self, call: ToolCall) -> ToolResult:
        """Run `call` with its arguments restored; its result masked."""
        restored = ToolCall(call.id, call.name, self._masked.restore_json(call.arguments))
        result = await self._tools.run(restored)
        return ToolResult(self._masked.add(result.content, self._locale), result.ok)


def _next_placeholder(kind: PiiKind, taken: set[str]) -> str:
    number = 1
    while f"[{kind.upper()}_{number}]" in taken:
        number += 1
    placeholder = f"[{kind.upper()}_{number}]"
    taken.add(placeholder)
    return placeholder
