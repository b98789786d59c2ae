"""What the customer wants: the intent of the example phrase (prompts/intents.yaml) nearest the text.

Measured on the labelled set (`bench/results/signals.md`), the nearest single example beat the
mean of the two or three nearest and each intent's centroid: with static embeddings a message
matches one phrasing well rather than the average of them. Digits and placeholders are taken out
before embedding: an order number says nothing about what the customer wants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import TemplateError
from app.signals.embedding import Embedder, Vectors
from app.signals.intents_file import UNKNOWN, IntentSet, read_intents
from app.signals.masking import PLACEHOLDER

# Below this cosine similarity a message is `unknown`: chosen on the labelled set, where
# off-topic messages ("do you sell gift cards?") come out near 0.2-0.3.
MIN_SIMILARITY = 0.3
# Examples of two intents this similar say the same thing to the model (on the shipped file the
# nearest pairs of different intents were "Quand vais-je recevoir mon colis / remboursement ?", 0.84).
SAME_MEANING = 0.8
DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class IntentMatch:
    """The intent found (or `unknown`) and the cosine similarity of its nearest example."""

    intent: str
    confidence: float


class IntentMatcher:
    """Matches texts against the example phrases of an intent file."""

    def __init__(self, intents: IntentSet, embedder: Embedder) -> None:
        self.intents = intents
        self._embedder = embedder
        self._owners = np.array([intents.names.index(example.intent) for example in intents.examples])
        self._examples = self._embed([example.text for example in intents.examples])

    @property
    def labels(self) -> tuple[str, ...]:
        """Every intent a match can name: the file's, and `unknown`."""
        return (*self.intents.names, UNKNOWN)

    def match(self, texts: list[str]) -> list[IntentMatch]:
        """The intent of each text, embedded together in one batch.

        Give texts with their personal data masked (`masking.mask`): placeholders are left out, and
        an e-mail address would otherwise count as words.
        """
        similarity = self._embed(texts) @ self._examples.T
        nearest = similarity.argmax(axis=1)
        matches = []
        for row, column in enumerate(nearest):
            score = float(similarity[row, column])
            name = self.intents.names[self._owners[column]] if score >= MIN_SIMILARITY else UNKNOWN
            matches.append(IntentMatch(name, round(max(score, 0.0), 2)))
        return matches

    def overlaps(self) -> list[TemplateError]:
        """Pairs of examples of different intents that mean nearly the same, as a problem at the later
        one's line: a message like them may get either intent.

        Pairs, not centroids: an intent's centroid mixes its languages, and on the shipped file 69 of
        167 examples were nearer another intent's centroid than their own while nearly all of them
        were matched right.
        """
        examples = self.intents.examples
        similar = np.triu(self._examples @ self._examples.T, k=1) >= SAME_MEANING
        return [
            TemplateError(
                f'"{later.text}" (`{later.intent}`) means nearly the same as "{earlier.text}" '
                f"(`{earlier.intent}`, line {earlier.line}): reword one of them",
                f"{self.intents.path}:{later.line}",
            )
            for first, second in zip(*np.nonzero(similar), strict=True)
            if (earlier := examples[first]).intent != (later := examples[second]).intent
        ]

    def _embed(self, texts: list[str]) -> Vectors:
        return self._embedder.embed([DIGITS.sub(" ", PLACEHOLDER.sub(" ", text)) for text in texts])


def check_intents(path: Path) -> tuple[IntentSet, list[TemplateError], list[TemplateError]]:
    """What `enricher prompts check` says of an intents file: its intents, its problems (`file:line`;
    the worker refuses the file) and, once it has none, its overlapping examples (warnings)."""
    intents, problems = read_intents(path)
    if problems:
        return intents, problems, []
    return intents, [], IntentMatcher(intents, Embedder()).overlaps()
