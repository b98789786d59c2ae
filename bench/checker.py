"""What the topics say about a bench run: lost, duplicated and reordered replies, and latencies.

Pure functions over what the bench read back from Kafka; no services, so the counting is unit-tested.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Keyed = tuple[str, str]
"""(conversation_id, message_id) of one input message or one reply."""


@dataclass(frozen=True)
class Verdict:
    """Replies checked against the inputs of one run."""

    inputs: int
    replies: int
    lost: int
    """Input messages without any reply."""
    duplicated: int
    """Replies beyond the first one for the same message_id."""
    out_of_order: int
    """First replies that arrive after the reply to a later message of the same conversation."""
    conversations_out_of_order: int
    unexpected: int
    """Replies whose message_id was never sent."""

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated, reordered or unexpected."""
        return not (self.lost or self.duplicated or self.out_of_order or self.unexpected)


def check(inputs: Iterable[Keyed], replies: Iterable[Keyed]) -> Verdict:
    """Compare the input sequence with the reply sequence, conversation by conversation.

    Both are in topic order (a conversation lives on one partition, so its records keep their
    offset order). A reply belongs to the conversation its input message was sent on; only the
    first reply of a message counts for ordering, later ones are duplicates.
    """
    conversation_of: dict[str, str] = {}
    position: dict[str, int] = {}
    per_conversation: Counter[str] = Counter()
    for conversation_id, message_id in inputs:
        conversation_of[message_id] = conversation_id
        position[message_id] = per_conversation[conversation_id]
        per_conversation[conversation_id] += 1

    seen: set[str] = set()
    latest: dict[str, int] = {}
    reordered: defaultdict[str, int] = defaultdict(int)
    reply_count = duplicated = unexpected = 0
    for _, message_id in replies:
        reply_count += 1
        if message_id not in conversation_of:
            unexpected += 1
            continue
        if message_id in seen:
            duplicated += 1
            continue
        seen.add(message_id)
        conversation_id, index = conversation_of[message_id], position[message_id]
        if index < latest.get(conversation_id, -1):
            reordered[conversation_id] += 1
        else:
            latest[conversation_id] = index
    return Verdict(
        inputs=len(conversation_of),
        replies=reply_count,
        lost=len(conversation_of) - len(seen),
        duplicated=duplicated,
        out_of_order=sum(reordered.values()),
        conversations_out_of_order=len(reordered),
        unexpected=unexpected,
    )


@dataclass(frozen=True)
class Latency:
    """End-to-end latency percentiles in milliseconds over the answered messages."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` in 0..1) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latency(sent_at: Mapping[str, float], replied_at: Iterable[tuple[str, float]]) -> Latency:
    """From each message's send time to the arrival of its first reply (seconds in, ms out)."""
    first: dict[str, float] = {}
    for message_id, moment in replied_at:
        if message_id in sent_at and message_id not in first:
            first[message_id] = moment
    values = sorted((moment - sent_at[message_id]) * 1000 for message_id, moment in first.items())
    return Latency(
        count=len(values),
        p50_ms=percentile(values, 0.50),
        p95_ms=percentile(values, 0.95),
        p99_ms=percentile(values, 0.99),
        max_ms=values[-1] if values else math.nan,
    )
