"""Language and sentiment of a text, and the limits of each."""

from __future__ import annotations

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from app.signals.models import LITE_MODEL, MAX_CHARS, LanguageDetector, SentimentScorer, SignalModels
from bench.labelled_signals import read_cases


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


def test_the_model_is_the_lite_one_in_the_wheel() -> None:
    assert LITE_MODEL.name == "lid.176.ftz"
    assert LITE_MODEL.stat().st_size < 2_000_000


@pytest.mark.parametrize("text", ["123 456", "👍", "?!", "hi"])
def test_too_little_text_has_no_language(detector: LanguageDetector, text: str) -> None:
    assert detector.detect(text) is None


@pytest.mark.parametrize("text", ["WHERE IS MY ORDER", "I NEED MY MONEY BACK now"])
def test_shouting_is_read_as_its_words(detector: LanguageDetector, text: str) -> None:
    # fastText itself takes both for Japanese
    assert detector.detect(text) == "en"


def test_a_long_text_is_read_by_its_start(detector: LanguageDetector) -> None:
    text = "Bonjour, ma commande n'est pas arrivée. " * 50 + "Where is my order? " * 50

    assert len(text) > 2 * MAX_CHARS
    assert detector.detect(text) == "fr"


def test_english_sentiment_runs_from_angry_to_pleased(models: SignalModels) -> None:
    angry = models.detect("This is terrible, the worst service ever. I am furious!")
    pleased = models.detect("Thank you so much, you were wonderful!")

    assert angry.sentiment is not None
    assert angry.sentiment <= -0.7
    assert pleased.sentiment is not None
    assert pleased.sentiment >= 0.7


def test_other_languages_have_no_sentiment(models: SignalModels) -> None:
    signals = models.detect("Das ist furchtbar, der schlechteste Service überhaupt!")

    assert signals.language == "de"
    assert signals.sentiment is None


def test_vader_emoji_are_all_outside_ascii() -> None:
    """The scorer's short cut takes an ASCII text to have no emoji for VADER to describe."""
    emoji = SentimentIntensityAnalyzer().emojis

    assert emoji
    assert not [symbol for symbol in emoji if symbol.isascii()]


@pytest.mark.parametrize(
    "text",
    [
        "Where is my order #10042? It has not arrived yet.",
        "I am NOT happy :(",
        "no problem at all",
        "Kind of ok, I guess... but the box was damaged!!!",
        "ok",
        ":)",
        "LOL this is the worst",
        "The parcel arrived today 👍",
        "It's fine -- really.",
        "",
    ],
)
def test_the_short_cut_scores_as_vader_does(text: str) -> None:
    """Texts VADER finds nothing in take the short cut; each score is VADER's own."""
    vader = round(float(SentimentIntensityAnalyzer().polarity_scores(text)["compound"]), 2)

    assert SentimentScorer().score(text, "en") == vader


def test_the_short_cut_scores_the_labelled_english_messages_as_vader_does() -> None:
    analyzer, scorer = SentimentIntensityAnalyzer(), SentimentScorer()
    english = [case.text for case in read_cases() if case.language == "en"]

    assert len(english) >= 10
    for text in english:
        assert scorer.score(text, "en") == round(float(analyzer.polarity_scores(text)["compound"]), 2), text
