"""The labelled messages (labelled.yaml) and how well the models do on them, for the tests and the bench."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.signals import pii
from app.signals.models import SignalModels, Signals

LABELLED = Path(__file__).with_name("labelled.yaml")
# VADER's own convention: a compound score within ±0.05 is neutral.
NEUTRAL_BAND = 0.05


@dataclass(frozen=True)
class Case:
    """One labelled message."""

    text: str
    language: str
    intent: str
    tone: str | None
    pii: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scores:
    """Share of messages (or personal data) each model got right."""

    language: float
    intent: float
    tone: float
    pii_precision: float
    pii_recall: float


def read_cases(path: Path = LABELLED) -> list[Case]:
    """Every labelled message."""
    return [
        Case(
            text=entry["text"],
            language=entry["language"],
            intent=entry["intent"],
            tone=entry.get("tone"),
            pii=frozenset((kind, value) for found in entry.get("pii", []) for kind, value in found.items()),
        )
        for entry in yaml.safe_load(path.read_text(encoding="utf-8"))
    ]


def tone(sentiment: float) -> str:
    """negative, neutral or positive, as VADER's authors read its compound score."""
    if sentiment <= -NEUTRAL_BAND:
        return "negative"
    return "positive" if sentiment >= NEUTRAL_BAND else "neutral"


def score(models: SignalModels, cases: Sequence[Case]) -> Scores:
    """How `models` do on `cases`."""
    found = [models.detect(case.text) for case in cases]
    toned = [(case, signals) for case, signals in zip(cases, found, strict=True) if case.tone]
    expected = {(n, *span) for n, case in enumerate(cases) for span in case.pii}
    spans = {(n, span.kind, span.value) for n, case in enumerate(cases) for span in pii.find(case.text)}
    return Scores(
        language=_share(
            case.language == signals.language for case, signals in zip(cases, found, strict=True)
        ),
        intent=_share(case.intent == signals.intent for case, signals in zip(cases, found, strict=True)),
        tone=_share(_tone_of(signals) == case.tone for case, signals in toned),
        pii_precision=len(spans & expected) / max(len(spans), 1),
        pii_recall=len(spans & expected) / max(len(expected), 1),
    )


def _tone_of(signals: Signals) -> str | None:
    return None if signals.sentiment is None else tone(signals.sentiment)


def _share(hits: Iterable[bool]) -> float:
    values = list(hits)
    return sum(values) / len(values)
