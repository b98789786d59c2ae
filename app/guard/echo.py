"""Whether an answer repeats the system part of its prompt: runs of words in common, found by shingles.

Words are runs of letters and digits, case-folded, so case, whitespace and punctuation never hide
a repeat. The system text's every `RUN_WORDS`-word window (shingle) goes into a set; the answer's
windows are looked up in it, which is linear in the answer's length. A passage of the system text
in double quotes is a line the model is given to say, not an instruction: it is left out.

`EchoFollower` reads a streamed answer a word at a time, for the guard's window (`window.py`): it
finds the same repeats, and says how many of the last words could still begin one.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import deque
from dataclasses import dataclass

WORD = re.compile(r"\w+")
QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”')
# 12: natural answers share at most 5 words in a row with the shipped templates' system parts
# (tests/guard/test_echo.py), whose instructions are mostly sentences of 10 to 17 words, so a leak
# of one instruction is caught, and eleven words in common (a greeting, a stock phrase) are not.
RUN_WORDS = 12


def words(text: str) -> list[str]:
    """The words of `text`, case-folded."""
    return WORD.findall(text.casefold())


def longest_echo(answer: str, system_text: str) -> list[str]:
    """The answer's longest stretch whose every `RUN_WORDS`-word window is in `system_text`; [] if none.

    A stretch found is at least `RUN_WORDS` words long.
    """
    shingles = system_words(system_text).shingles
    said = words(answer)
    best_start, best_end = 0, 0
    start = None  # where the current run of windows found in the system text began
    for position in range(len(said) - RUN_WORDS + 1):
        if tuple(said[position : position + RUN_WORDS]) in shingles:
            start = position if start is None else start
            if position + RUN_WORDS - start > best_end - best_start:
                best_start, best_end = start, position + RUN_WORDS
        else:
            start = None
    return said[best_start:best_end]


@dataclass(frozen=True)
class SystemWords:
    """The system text's words as the echo checks read them, passage by passage (quotes left out)."""

    shingles: frozenset[tuple[str, ...]]
    """Every `RUN_WORDS`-word window."""
    pairs: frozenset[tuple[str, str]]
    """Every two words in a row, of passages long enough to hold a window."""
    vocabulary: frozenset[str]
    """Every word of those passages."""


@functools.lru_cache(maxsize=256)
def system_words(system_text: str) -> SystemWords:
    """The shingles, pairs and words of `system_text`."""
    # Cached: a conversation's system text is the same for each of its replies, and building the
    # sets costs more than the look-ups (bench/guard.py).
    shingles: set[tuple[str, ...]] = set()
    pairs: set[tuple[str, str]] = set()
    vocabulary: set[str] = set()
    for part in QUOTED.split(system_text):
        told = words(part)
        if len(told) < RUN_WORDS:
            continue
        shingles.update(tuple(told[i : i + RUN_WORDS]) for i in range(len(told) - RUN_WORDS + 1))
        pairs.update(itertools.pairwise(told))
        vocabulary.update(told)
    return SystemWords(frozenset(shingles), frozenset(pairs), frozenset(vocabulary))


class EchoFollower:
    """Reads an answer word by word: whether it has repeated `RUN_WORDS` words of the system text
    in a row, and how many of its last words could still be the start of such a repeat.

    The words of a repeat follow each other in the system text, so each two of them in a row are
    one of its pairs: the run of last words that are all pairs there bounds what may still grow
    into a repeat, at the cost of one set look-up a word. Only a run of `RUN_WORDS` is looked up
    in the shingles.
    """

    def __init__(self, system_text: str) -> None:
        self._told = system_words(system_text)
        self._last: deque[str] = deque(maxlen=RUN_WORDS)
        self._run = 0

    @property
    def open_words(self) -> int:
        """How many of the last words could still be part of a repeat (at most `RUN_WORDS` - 1)."""
        return min(self._run, RUN_WORDS - 1)

    def add(self, word: str) -> bool:
        """Follow one more (case-folded) word; True when the last `RUN_WORDS` words repeat the system text."""
        if self._last and (self._last[-1], word) in self._told.pairs:
            self._run += 1
        else:
            self._run = 1 if word in self._told.vocabulary else 0
        self._last.append(word)
        return self._run >= RUN_WORDS and tuple(self._last) in self._told.shingles
