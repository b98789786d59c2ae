"""Language and sentiment of a text, and the limits of each."""

from __future__ import annotations

import pytest

from app.signals.language import LITE_MODEL, MAX_CHARS, LanguageDetector
from app.signals.models import SignalModels


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector()


def test_the_model_is_the_lite_one_in_the_wheel() -> None:
    assert LITE_MODEL.name == "lid.176.ftz"
    assert LITE_MODEL.stat().st_size < 2_000_000


@pytest.mark.parametrize("text", ["123 456", "👍", "?!", "hi"])
def test_too_little_text_has_no_language(detector: LanguageDetector, text: str) -> None:
    assert detector.detect(text) is None


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
