"""The one entry point: what `detect` gives, as the reply's `signals` field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.errors import TemplateError
from app.signals.models import SignalModels
from app.signals.pii import wording


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
    _, masked = models.read(["Call me at +44 20 7946 0958", "Still waiting, +44 20 7946 0958!"])

    assert masked.texts == ("Call me at [PHONE_1]", "Still waiting, [PHONE_1]!")


def test_a_prompts_directory_without_intents_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"intents\.yaml"):
        SignalModels.load(tmp_path)


def test_read_masks_the_conversation_and_detects_the_message(models: SignalModels) -> None:
    signals, masked = models.read(["Bitte an max@beispiel.de schreiben", "Mail: max@beispiel.de"])

    assert masked.texts == ("Bitte an [EMAIL_1] schreiben", "Mail: [EMAIL_1]")
    assert signals.language == "de"
    assert signals.pii == ("email",)


def test_messages_that_differ_in_numbers_and_personal_data_read_alike() -> None:
    first = wording("Where is order 10042? Mail [EMAIL_1] or call [PHONE_2]")
    second = wording("Where is  order #77?\nMail [EMAIL_3]")

    assert first == "Where is order ? Mail or call"
    assert second == "Where is order ? Mail"
    assert wording("Where is order 1 ?") == wording("Where is order 22 ?")


def test_a_signature_ids_and_links_are_not_the_customer_s_words() -> None:
    signed = "Where is order ABC-991? See https://shop.example/o/991\n\nBest regards,\nJohn Smith"

    assert wording(signed) == "Where is order ? See"
    assert wording("Give me a human -- John\nSent from my iPhone") == "Give me a human"
    assert wording("Thanks, give me a human") == "Thanks, give me a human"


def test_a_remembered_wording_reads_as_a_new_one(models: SignalModels) -> None:
    texts = ["Ich möchte mein Geld zurück für Bestellung 4411", "I want to talk to a human, order 9"]
    models.forget()
    new = [models.detect(text) for text in texts]

    again = [models.detect(text.replace("4411", "12").replace("9", "345")) for text in texts]
    models.forget()
    forgotten = [models.detect(text) for text in texts]

    assert again == new == forgotten
    assert [signals.intent for signals in new] == ["refund", "wants_human"]
