"""What the embedded models found, as bounded metric labels (never a value from the text)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

from prometheus_client import Counter

from app.observability import metrics
from app.signals.models import Signals

# Languages counted by name; any other detected language counts as `other`, so the label set
# stays bounded whatever the detector (which knows 176) returns.
COUNTED_LANGUAGES = frozenset(
    {"en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "no", "fi", "cs", "tr", "ru", "ja", "zh"}
)
NEUTRAL_BAND = 0.05  # VADER's own threshold between neutral and positive or negative


def count(signals: Signals) -> None:
    """Count what the models found in one message in `enricher_signals_total`."""
    for signal, value in signal_labels(signals):
        _counter(signal, value).inc()


@functools.cache  # bounded: the labels are; `labels()` took 10 µs a call with cold caches
def _counter(signal: str, value: str) -> Counter:
    return metrics.SIGNALS.labels(signal, value)


def signal_labels(signals: Signals) -> Iterator[tuple[str, str]]:
    """(signal, value) pairs to count for one message: its language, tone, intent and each kind of
    personal data found."""
    language = signals.language
    if language is not None and language not in COUNTED_LANGUAGES:
        language = "other"
    yield "language", language or "unknown"
    yield "sentiment", _tone(signals.sentiment)
    yield "intent", signals.intent  # the intents file's names and `unknown`
    for kind in signals.pii:
        yield "pii", kind


def _tone(sentiment: float | None) -> str:
    if sentiment is None:
        return "unknown"
    if sentiment <= -NEUTRAL_BAND:
        return "negative"
    return "positive" if sentiment >= NEUTRAL_BAND else "neutral"
