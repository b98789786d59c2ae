"""Placeholders for personal data: what leaves for the remote LLM, and the originals put back after.

`mask(texts)` masks a conversation's texts together (the message and its history turns, and for
the worker's prompt the profile's fields and the message's metadata: `prompt_texts`), so a value
has one placeholder in all of them: `[EMAIL_1]` in the history, the profile and the message is the
same address, and the LLM can refer to it. `Masked.restore` puts the originals back into the
answer; a placeholder the LLM made up stays as it is, since there is nothing to put back. The
tools the LLM calls (`MaskedTools`) get the originals in their arguments, and their results are
masked into the same placeholders (`Masked.add`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from app.llm.tool_calls import ToolCall, ToolResult, ToolRunner
from app.schemas import CustomerMessage, HistoryTurn
from app.signals import pii
from app.signals.noise import without_noise
from app.signals.pii import PiiKind

PLACEHOLDER = re.compile(rf"\[({'|'.join(kind.upper() for kind in pii.KINDS)})_(\d+)\]")
# The longest tail of a stream chunk that may still become a placeholder (`[TAX_ID_1]` the longest
# name): held back until the next chunk says, so a placeholder split across chunks is restored whole.
PARTIAL_PLACEHOLDER = re.compile(r"\[(?:[A-Z]{0,6}(?:_[A-Z]{0,2})?(?:_\d*)?)?$")
KIND_NAMED: dict[str, PiiKind] = {kind.upper(): kind for kind in pii.KINDS}


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
        spans = pii.find(text, pii.phone_region(locale))
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
    message's `locale`, the plain national phone numbers of its region too (`pii.phone_region`).

    Values are told apart by what they are, not how they are written (`Ada@Example.com` and
    `ada@example.com` are one address; a card with or without spaces one card); the original is
    the first way it was written. Numbers already used by placeholder-like text the customer typed
    are skipped, so restoring never replaces something the customer wrote.
    """
    taken = {match.group() for text in texts if "[" in text for match in PLACEHOLDER.finditer(text)}
    region = pii.phone_region(locale)
    by_value: dict[tuple[PiiKind, str], str] = {}
    originals: dict[str, str] = {}
    found: list[pii.Span] = []
    masked = []
    for text in texts:
        spans = pii.find(text, region)
        found += spans
        masked.append(_replaced_spans(text, spans, by_value, originals, taken) if spans else text)
    return Masked(texts=tuple(masked), originals=originals, kinds=pii.kinds(found))


def _replaced_spans(
    text: str,
    spans: Sequence[pii.Span],
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
