"""Whether an answer repeats the system part of its prompt: runs of words in common, found by shingles.

Words are runs of letters and digits, case-folded, so case, whitespace and punctuation never hide
a repeat. The system text's every `RUN_WORDS`-word window (shingle) goes into a set; the answer's
windows are looked up in it, which is linear in the answer's length. A passage of the system text
in double quotes is a line the model is given to say, not an instruction: it is left out.
"""

from __future__ import annotations

import functools
import re

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
    shingles = _shingles(system_text)
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


@functools.lru_cache(maxsize=256)
def _shingles(system_text: str) -> frozenset[tuple[str, ...]]:
    # Cached: a conversation's system text is the same for each of its replies, and building the
    # set costs more than the look-ups (bench/guard.py).
    shingles: set[tuple[str, ...]] = set()
    for part in QUOTED.split(system_text):
        told = words(part)
        shingles.update(tuple(told[i : i + RUN_WORDS]) for i in range(len(told) - RUN_WORDS + 1))
    return frozenset(shingles)
