"""What the customer wants: the intent of the example phrase (prompts/intents.yaml) nearest the text.

Measured on the labelled set (`bench/results/signals.md`), the nearest single example beat the
mean of the two or three nearest and each intent's centroid: with static embeddings a message
matches one phrasing well rather than the average of them. Texts are read as `masking.wording`
gives them: an order number says nothing about what the customer wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import TemplateError
from app.prompts.intents_file import UNKNOWN, IntentSet, read_intents
from app.signals.embedding import Embedder, Table, Vectors
from app.signals.masking import wording

# Below this cosine similarity a message is `unknown`: chosen on the labelled set, where
# off-topic messages ("do you sell gift cards?") come out near 0.2-0.3.
MIN_SIMILARITY = 0.3
# Examples of two intents this similar say the same thing to the model (on the shipped file the
# nearest pairs of different intents were "Quand vais-je recevoir mon colis / remboursement ?", 0.84).
SAME_MEANING = 0.8
ROWS_AT_ONCE = 4096


@dataclass(frozen=True)
class IntentMatch:
    """The intent found (or `unknown`) and the cosine similarity of its nearest example."""

    intent: str
    confidence: float


class IntentMatcher:
    """Matches texts against the example phrases of an intent file."""

    def __init__(self, intents: IntentSet, embedder: Embedder) -> None:
        """Match against `intents`; `embedder` is needed only here (its tokenizer is kept)."""
        self.intents = intents
        self._tokens = embedder.tokens
        self._owners = [example.intent for example in intents.examples]
        self._examples = embedder.embed([wording(example.text) for example in intents.examples])
        self._dimensions = embedder.table.shape[1]
        self._rows = scored_rows(embedder.table, self._examples)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every intent a match can name: the file's, and `unknown`."""
        return (*self.intents.names, UNKNOWN)

    def match(self, texts: list[str]) -> list[IntentMatch]:
        """The intent of each text, read as `masking.wording` gives it.

        Give texts with their personal data masked (`masking.mask`): placeholders are left out, and
        an e-mail address would otherwise count as words.
        """
        return [self._nearest(ids) for ids in self._tokens.ids([wording(text) for text in texts])]

    def _nearest(self, ids: list[int]) -> IntentMatch:
        if not ids:
            return IntentMatch(UNKNOWN, 0.0)
        # Two numpy calls, then Python's own on a list of 400 numbers: with cold caches each numpy
        # call costs about 30 µs in the worker, where `max` and `math.hypot` stay warm.
        summed: list[float] = self._rows[ids].sum(axis=0).tolist()
        similarity = summed[self._dimensions :]
        best = max(similarity)
        score = best / max(math.hypot(*summed[: self._dimensions]), 1e-12)
        name = self._owners[similarity.index(best)] if score >= MIN_SIMILARITY else UNKNOWN
        return IntentMatch(name, round(max(score, 0.0), 2))

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


def scored_rows(table: Table, examples: Vectors) -> Vectors:
    """Each token's vector followed by its dot product with every example.

    Summing a text's rows gives its vector (for its length) and its similarity to each example at
    once. In the worker each numpy call runs with cold caches, about 30 µs: this took the intent
    from 0.62 to 0.25 ms a message there, for 54 MB where the float32 table took 33 (the float16
    one is let go after). Filled a block at a time, so that no product of the whole table is
    held beside it.
    """
    tokens, dimensions = table.shape
    rows = np.empty((tokens, dimensions + len(examples)), dtype=np.float32)
    rows[:, :dimensions] = table
    for start in range(0, tokens, ROWS_AT_ONCE):
        block = slice(start, start + ROWS_AT_ONCE)
        rows[block, dimensions:] = table[block].astype(np.float32) @ examples.T
    return rows


def check_intents(path: Path) -> tuple[IntentSet, list[TemplateError], list[TemplateError]]:
    """What `enricher prompts check` says of an intents file: its intents, its problems (`file:line`;
    the worker refuses the file) and, once it has none, its overlapping examples (warnings)."""
    intents, problems = read_intents(path)
    if problems:
        return intents, problems, []
    return intents, [], IntentMatcher(intents, Embedder()).overlaps()
