"""The labelled messages (bench/data/labelled.yaml) and how well the models do on them, for the
bench and the tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.signals import pii
from app.signals.models import SignalModels, Signals

SIGNALS_DATA = Path(__file__).resolve().parent / "data"
LABELLED = SIGNALS_DATA / "labelled.yaml"
# Personal data in every format, and near misses: scored per kind with the messages above.
PERSONAL_DATA = SIGNALS_DATA / "personal_data.yaml"
Labels = frozenset[tuple[str, str]]
# A text, what it holds, and its message's phone region (`pii.phone_region` of its `locale`).
LabelledText = tuple[str, Labels, str | None]
# VADER's own convention: a compound score within ±0.05 is neutral.
NEUTRAL_BAND = 0.05


@dataclass(frozen=True)
class Case:
    """One labelled message."""

    text: str
    language: str
    intent: str
    tone: str | None
    pii: Labels


@dataclass(frozen=True)
class KindScore:
    """How the personal-data rules do on one kind: share of spans found that are right
    (precision), share of labelled spans found (recall), and how many each."""

    precision: float
    recall: float
    labelled: int
    found: int


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
            pii=_labels(entry),
        )
        for entry in yaml.safe_load(path.read_text(encoding="utf-8"))
    ]


def personal_data_texts() -> list[LabelledText]:
    """Every labelled text with its personal data: the messages (no locale) and personal_data.yaml's
    texts, an entry's optional `locale` giving its region."""
    entries = [*yaml.safe_load(PERSONAL_DATA.read_text(encoding="utf-8"))]
    return [(case.text, case.pii, None) for case in read_cases()] + [
        (entry["text"], _labels(entry), pii.phone_region(entry.get("locale"))) for entry in entries
    ]


def pii_by_kind(texts: Sequence[LabelledText]) -> dict[str, KindScore]:
    """Precision and recall of the personal-data rules on `texts`, per kind (`pii.KINDS`)."""
    expected = {(n, *span) for n, (_, labels, _) in enumerate(texts) for span in labels}
    spans = {
        (n, span.kind, span.value)
        for n, (text, _, region) in enumerate(texts)
        for span in pii.find(text, region)
    }
    scores: dict[str, KindScore] = {}
    for kind in pii.KINDS:
        labelled = {span for span in expected if span[1] == kind}
        found = {span for span in spans if span[1] == kind}
        right = len(labelled & found)
        scores[kind] = KindScore(
            right / max(len(found), 1), right / max(len(labelled), 1), len(labelled), len(found)
        )
    return scores


def _labels(entry: dict[str, Any]) -> Labels:
    return frozenset((kind, str(value)) for found in entry.get("pii", []) for kind, value in found.items())


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
