"""Intent matching with WordLlama's embeddings, and the overlap warnings of the intents file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from app.prompts.intents_file import FILE_NAME, UNKNOWN, load_intents
from app.signals.models import TOKENIZER, WEIGHTS, Embedder, SignalModels, check_intents, package_dir
from bench.labelled_signals import read_cases
from tests.helpers.workers import PROMPTS


def test_vectors_are_wordllamas_own() -> None:
    # Our reader of the wheel's two files must embed exactly as the library's inference does.
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
    from wordllama import WordLlamaInference

    directory = package_dir()
    table = load_file(str(directory / WEIGHTS))["embedding.weight"]
    theirs = WordLlamaInference(table, Tokenizer.from_file(str(directory / TOKENIZER)))
    texts = ["Where is my order?", "Wo ist meine Bestellung?", "annuler"]

    ours = Embedder().embed(texts)

    assert np.allclose(ours, theirs.embed(texts, norm=True), atol=1e-5)


SPACE = "\u2581"  # how the tokenizer writes a space


def test_no_token_holds_a_space_but_at_its_start() -> None:
    vocabulary = Embedder().tokens.tokenizer.get_vocab()

    inner = [token for token in vocabulary if SPACE in token[1:] and set(token) != {SPACE}]

    assert len(vocabulary) == 32_000
    assert inner == []


def test_a_text_has_the_tokens_of_its_words() -> None:
    tokens = Embedder().tokens
    texts = [
        *(case.text for case in read_cases()),
        *(example.text for example in load_intents(PROMPTS / FILE_NAME).examples),
        "  leading and   inner\tspaces\nand lines  ",
        "emoji 👍🏽 and ünïcödé, 日本語のテキスト, Ελληνικά, عربى",
        "punctuation!!! ... (brackets) [EMAIL_1] don't-stop",
        "markup <s> in </s>the<unk> text",
        "",
    ]

    for text in texts:
        whole = " ".join(re.sub("</?s>|<unk>", " ", text).split())
        assert tokens.ids([text])[0] == tokens.tokenizer.encode(whole, add_special_tokens=False).ids
        assert tokens.ids([text])[0] == tokens.ids([text])[0]  # remembered alike


def test_phrasings_not_in_the_file_find_their_intent(models: SignalModels) -> None:
    assert models.detect("My parcel still hasn't come, where is it?").intent == "order_status"
    assert models.detect("Ich möchte mein Abo kündigen").intent == "cancel"
    assert models.detect("Can I speak with a person please").intent == "wants_human"


def test_off_topic_text_is_unknown_with_its_low_confidence(models: SignalModels) -> None:
    signals = models.detect("What's the capital of Australia?")

    assert signals.intent == UNKNOWN
    assert 0 <= signals.intent_confidence < 0.3


def test_labels_are_the_files_intents_and_unknown(models: SignalModels) -> None:
    assert models.intent_labels[-1] == UNKNOWN
    assert "refund" in models.intent_labels
    assert len(set(models.intent_labels)) == len(models.intent_labels)


def test_examples_meaning_the_same_for_two_intents_are_warned_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text(
        "refund:\n  - I want my money back\n  - Please refund me\n"
        "complaint:\n  - It arrived broken\n  - I want my money back now\n"
    )

    _, problems, overlaps = check_intents(path)

    assert problems == []
    assert [overlap.location for overlap in overlaps] == [f"{path}:6"]
    assert "nearly the same as" in overlaps[0].reason
    assert "line 2" in overlaps[0].reason


def test_the_shipped_file_has_no_overlaps() -> None:
    _, problems, overlaps = check_intents(PROMPTS / "intents.yaml")

    assert (problems, overlaps) == ([], [])
