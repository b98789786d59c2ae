"""The handoff rules' phrases matched on what customers write: noise, case, accents, articles and a typo
do not matter; near misses, negations and a one-word phrase inside a sentence do not match; and the
shipped phrases on the labelled messages."""

from __future__ import annotations

import pytest

from app.prompts.handoff_rules import Phrase, PhraseMatcher, read_rules
from bench.handoff_messages import labelled, score
from tests.helpers.workers import PROMPTS

PHRASES = {
    "en": [
        "human/agent/operator",
        "human/agent please",
        "talk/speak to/with person/human/agent/manager",
        "give/get me human/person",
    ],
    "de": ["mit mitarbeiter/menschen sprechen"],
    "fr": ["parler à un humain/conseiller"],
    "es": ["hablar con persona/agente"],
}
MATCHER = PhraseMatcher(
    Phrase.of(text, language, line)
    for line, (language, text) in enumerate(
        ((language, text) for language, texts in PHRASES.items() for text in texts), start=1
    )
)


def said(text: str) -> str | None:
    phrase = MATCHER.find(text)
    return phrase.text if phrase is not None else None


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("HUMAN PLEASE", "human/agent please"),
        ("get me a real human!!", "give/get me human/person"),
        ("I'd like to speak with a manager", "talk/speak to/with person/human/agent/manager"),
        (
            "I have been waiting for 3 weeks for order ABC-991, this bot is useless, give me a human",
            "give/get me human/person",
        ),
        (
            "Can I talk to a person about 4411? Sent from my iPhone",
            "talk/speak to/with person/human/agent/manager",
        ),
        ("human\n\nBest regards,\nJohn Smith\nACME GmbH", "human/agent/operator"),
        ("Ich möchte mit einem Mitarbeiter sprechen. MfG, Hans", "mit mitarbeiter/menschen sprechen"),
        ("JE VEUX PARLER A UN HUMAIN", "parler à un humain/conseiller"),
        ("¿Puedo hablar con una persona? pedido ABC-12", "hablar con persona/agente"),
    ],
    ids=[
        "shouting",
        "a word between",
        "polite",
        "order number",
        "signature line",
        "sign-off",
        "German",
        "no accents",
        "Spanish",
    ],
)
def test_a_request_is_heard_through_its_noise(text: str, phrase: str) -> None:
    assert said(text) == phrase


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("i need to talk to a huamn", "talk/speak to/with person/human/agent/manager"),
        ("speak to your manger", "talk/speak to/with person/human/agent/manager"),
        ("get me a persn", "give/get me human/person"),
    ],
)
def test_a_typo_in_a_long_word_is_forgiven(text: str, phrase: str) -> None:
    assert said(text) == phrase


@pytest.mark.parametrize(
    "text",
    [
        "is this a real person?",
        "my human resources department needs the invoice",
        "the agent who delivered my parcel was rude",
        "human error on my invoice",
        "Please send it to my human resources, please",  # "human please" is two words, said together only
        "I'll speak to my bank about it",
        "tlak to a person",  # a typo in a short word is not forgiven: "tlak" could be anything
        "Where is order 4411?\n-- Operator",  # a signature is not the customer's words
        "I don't need to talk to a human, just tell me the status",
        "Je n'ai pas besoin de parler à un conseiller",
        "No necesito hablar con un agente",
        "Ich möchte nicht mit einem Menschen sprechen",
    ],
)
def test_near_misses_and_negations_are_not_heard(text: str) -> None:
    assert said(text) is None


def test_a_negation_in_another_clause_or_a_can_t_does_not_undo_a_request() -> None:
    assert said("No, I want to talk to a human") is not None
    assert said("Why can't I talk to a person?") is not None
    assert said("Don't send it. Give me a human") is not None


def test_a_one_word_phrase_is_heard_only_on_its_own() -> None:
    assert said("this bot is useless. Human!") == "human/agent/operator"
    assert said("Thanks, operator?") == "human/agent/operator"
    assert said("the operator of the website") is None


def test_a_phrase_of_two_words_is_exact_one_of_three_allows_a_word_between() -> None:
    assert said("Get me, please, a human") == "give/get me human/person"  # commas do not part its words
    assert said("I called the agent. Please refund me") is None  # the end of a sentence does
    assert said("talk to a real person") is not None
    assert said("talk to a very real person") is None  # two words between: too far apart


def test_without_phrases_nothing_is_heard() -> None:
    assert PhraseMatcher([]).find("HUMAN PLEASE") is None


def test_the_shipped_phrases_hear_the_labelled_requests_and_no_near_miss() -> None:
    rules, problems = read_rules(PROMPTS / "handoff.yaml", ())
    assert problems == []

    def hands_over(text: str) -> bool:
        return rules.decide(intent=None, sentiment=None, tier="", fallbacks_in_a_row=0, text=text) is not None

    for split in ("dev", "test"):
        result = score(labelled(split), lambda message: hands_over(message.text))
        assert result.recall >= 0.95, (split, result.missed)
        assert result.false_handoffs <= 0.02, (split, result.wrongly_handed_over)
