"""The messages labelled for the handoff decision (bench/data/handoff_messages.yaml), for the
tests and the bench."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

HANDOFF_MESSAGES = Path(__file__).resolve().parent / "data" / "handoff_messages.yaml"
Split = Literal["dev", "test"]


@dataclass(frozen=True)
class Labelled:
    """One labelled message: its text and language, and whether it asks for a person."""

    text: str
    language: str
    asks: bool


@dataclass(frozen=True)
class Score:
    """How a decision does on labelled messages: the share of requests handed over (recall), the
    share of near misses handed over (false handoffs), and the messages it got wrong."""

    recall: float
    false_handoffs: float
    missed: tuple[Labelled, ...]
    wrongly_handed_over: tuple[Labelled, ...]


def labelled(split: Split) -> list[Labelled]:
    """The messages of a split, requests for a person first, each group by language."""
    data = yaml.safe_load(HANDOFF_MESSAGES.read_text(encoding="utf-8"))[split]
    return [
        Labelled(text, language, kind == "asks")
        for kind in ("asks", "near_misses")
        for language, texts in data[kind].items()
        for text in texts
    ]


def score(messages: Sequence[Labelled], hands_over: Callable[[Labelled], bool]) -> Score:
    """How `hands_over` does on `messages`."""
    handed = {message: hands_over(message) for message in messages}
    asks = [message for message in messages if message.asks]
    near = [message for message in messages if not message.asks]
    missed = tuple(message for message in asks if not handed[message])
    wrong = tuple(message for message in near if handed[message])
    return Score(1 - len(missed) / len(asks), len(wrong) / len(near), missed, wrong)
