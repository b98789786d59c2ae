"""The one entry point: what `detect` gives, as the reply's `signals` field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.errors import TemplateError
from app.signals.models import SignalModels


def test_signals_as_the_contract_shows_them(models: SignalModels) -> None:
    signals = models.detect("Ich möchte meine Bestellung stornieren. Meine E-Mail: max@beispiel.de")

    record = signals.as_record()

    assert record == {"language": "de", "sentiment": None, "intent": "cancel", "pii": ["email"]}
    assert json.loads(json.dumps(record)) == record
    assert 0.3 <= signals.intent_confidence <= 1


def test_english_signals_have_a_sentiment(models: SignalModels) -> None:
    record = models.detect("The box arrived crushed and the glass is broken, awful.").as_record()

    assert record["language"] == "en"
    assert record["intent"] == "complaint"
    assert isinstance(record["sentiment"], float)
    assert record["sentiment"] < -0.5
    assert record["pii"] == []


def test_mask_covers_a_conversation(models: SignalModels) -> None:
    masked = models.mask(["Call me at +44 20 7946 0958", "Still waiting, +44 20 7946 0958!"])

    assert masked.texts == ("Call me at [PHONE_1]", "Still waiting, [PHONE_1]!")


def test_a_prompts_directory_without_intents_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"intents\.yaml"):
        SignalModels.load(tmp_path)
