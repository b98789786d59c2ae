"""How the customer feels, from VADER's English word list and rules (vaderSentiment).

English only: VADER scores the words of its lexicon, and a German or French message has almost
none of them, so it would come out 0.0, which reads as "calm" when it means "not measured".
Texts in any other language get no sentiment (None), and templates can tell the two apart.
"""

from __future__ import annotations

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

SCORED_LANGUAGES = frozenset({"en"})


class SentimentScorer:
    """VADER's compound score of an English text: -1 (angry) to 1 (pleased), 0 neutral."""

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, text: str, language: str | None) -> float | None:
        """The compound score rounded to two decimals; None when `language` is not English."""
        if language not in SCORED_LANGUAGES:
            return None
        return round(float(self._analyzer.polarity_scores(text)["compound"]), 2)
