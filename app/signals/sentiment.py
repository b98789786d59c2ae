"""How the customer feels, from VADER's English word list and rules (vaderSentiment).

English only: VADER scores the words of its lexicon, and a German or French message has almost
none of them, so it would come out 0.0, which reads as "calm" when it means "not measured".
Texts in any other language get no sentiment (None), and templates can tell the two apart.
"""

from __future__ import annotations

import string

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

SCORED_LANGUAGES = frozenset({"en"})


class SentimentScorer:
    """VADER's compound score of an English text: -1 (angry) to 1 (pleased), 0 neutral."""

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        self._lexicon = frozenset(self._analyzer.lexicon)

    def score(self, text: str, language: str | None) -> float | None:
        """The compound score rounded to two decimals; None when `language` is not English."""
        if language not in SCORED_LANGUAGES:
            return None
        # VADER reads emoji as their descriptions, whose words may be in its lexicon; all of its
        # emoji are outside ASCII (tests/signals/test_language_sentiment.py), so an ASCII text has none.
        if text.isascii() and self._lexicon.isdisjoint(_words(text)):
            # VADER gives a word a valence only when it is in its lexicon, and every rule only
            # scales valences: without such a word the score is 0.0. Telling so here costs
            # 5 µs where VADER's rules take 0.2 ms (bench/results/signals.md), and a support
            # message as often as not says nothing VADER knows ("where is my order?").
            return 0.0
        return round(float(self._analyzer.polarity_scores(text)["compound"]), 2)


def _words(text: str) -> set[str]:
    """Every form in which VADER may look a word of `text` up: lowered, with and without the
    punctuation around it (VADER keeps it on words of two letters or fewer, such as emoticons)."""
    tokens = text.lower().split()
    return {*tokens, *(token.strip(string.punctuation) for token in tokens)}
