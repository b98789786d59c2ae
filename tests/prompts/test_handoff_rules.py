"""Reading prompts/handoff.yaml: each mistake reported at its line, the rest still usable; and the
decision the rules make for a message, a rule's conditions any of which will do."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.prompts.handoff_rules import HandoffReason, HandoffRules, read_rules
from app.prompts.intents_file import load_intents
from tests.helpers.workers import PROMPTS

INTENTS = ("wants_human", "refund", "complaint")
GOOD = """\
rules:
  - name: asks for a person
    intent: wants_human
  - name: very upset customer
    sentiment_below: -0.6
    tiers: [Gold, platinum]
  - name: the AI keeps failing
    fallbacks_in_a_row: 3
"""


def rules_of(tmp_path: Path, text: str) -> HandoffRules:
    path = tmp_path / "handoff.yaml"
    path.write_text(text)
    rules, problems = read_rules(path, INTENTS)
    assert problems == []
    return rules


# Reading the file


def test_the_shipped_rules_are_clean_and_name_shipped_intents() -> None:
    intents = load_intents(PROMPTS / "intents.yaml").names

    rules, problems = read_rules(PROMPTS / "handoff.yaml", intents)

    assert problems == []
    assert [rule.describe() for rule in rules.rules] == [
        "rule 'asks for a person': 32 phrases (de, en, es, fr)",
        "rule 'very upset customer': sentiment below -0.6, only tiers gold, platinum",
        "rule 'the AI keeps failing': 3 fallback replies in a row",
        "rule 'the AI says so': the AI's answer says needs_human",
    ]


def test_each_rule_keeps_its_line_condition_and_tiers(tmp_path: Path) -> None:
    first, second, third = rules_of(tmp_path, GOOD).rules

    assert (first.line, first.intent, first.tiers) == (2, "wants_human", frozenset())
    assert (second.line, second.sentiment_below, second.tiers) == (4, -0.6, {"gold", "platinum"})
    assert (third.line, third.fallbacks_in_a_row) == (7, 3)
    assert second.describe() == "rule 'very upset customer': sentiment below -0.6, only tiers gold, platinum"


@pytest.mark.parametrize(
    "text",
    ["", "# no rules yet\n", "rules:\n", "rules: []\n"],
    ids=["empty file", "comments only", "no list", "empty list"],
)
def test_a_file_without_rules_hands_nothing_off(tmp_path: Path, text: str) -> None:
    rules = rules_of(tmp_path, text)

    assert rules.rules == ()
    assert rules.decide(intent="wants_human", sentiment=-1.0, tier="gold", fallbacks_in_a_row=99) is None


def test_no_file_is_no_rules_and_no_problem(tmp_path: Path) -> None:
    assert read_rules(tmp_path / "handoff.yaml", INTENTS) == (HandoffRules(), [])


BROKEN = {
    "invalid YAML": ("rules:\n  - name: a\n    intent: [oops\n", 4, "not valid YAML"),
    "not a mapping": ("- name: a\n", 1, "must start with `rules:`"),
    "unknown top key": ("rule:\n  - name: a\n    intent: refund\n", 1, "unknown key `rule`"),
    "rules not a list": ("rules: asks for a person\n", 1, "must be followed by a list"),
    "rule not a mapping": ("rules:\n  - asks for a person\n", 2, "a rule must be `name:` and its conditions"),
    "misspelt key": (
        "rules:\n  - name: a\n    intent: refund\n    teirs: [gold]\n",
        4,
        "unknown key `teirs`: did you mean `tiers`?",
    ),
    "no name": ("rules:\n  - intent: refund\n", 2, "this rule has no `name:`"),
    "name not text": ("rules:\n  - name: 42\n    intent: refund\n", 2, "`name` must be some words"),
    "no condition": ("rules:\n  - name: a\n    tiers: [gold]\n", 2, "rule 'a' has no condition"),
    "needs_human false": ("rules:\n  - name: a\n    needs_human: false\n", 3, "can only be `true`"),
    "phrases as a list": (
        "rules:\n  - name: a\n    phrases: [human please]\n",
        3,
        "`phrases` must list phrases by language",
    ),
    "phrases of no language": (
        "rules:\n  - name: a\n    phrases:\n      english: [human please]\n",
        4,
        "`english` is not a language code",
    ),
    "a language without phrases": (
        "rules:\n  - name: a\n    phrases:\n      en:\n",
        4,
        "`en:` must be followed by a list of phrases",
    ),
    "a phrase not text": (
        "rules:\n  - name: a\n    phrases:\n      en:\n        - human please\n        - no\n",
        6,
        "a phrase must be words",
    ),
    "a phrase with a number": (
        "rules:\n  - name: a\n    phrases:\n      en: [call me at five, press 0 for a human]\n",
        4,
        '"press 0 for a human" has a number',
    ),
    "a phrase of articles": ("rules:\n  - name: a\n    phrases:\n      de: [die/der/das]\n", 4, "no words"),
    "alternatives of two words": (
        "rules:\n  - name: a\n    phrases:\n      fr: [je/j'aimerais parler à un humain]\n",
        4,
        "`je/j'aimerais`: each word between the `/` must be one word",
    ),
    "a phrase twice": (
        "rules:\n  - name: a\n    phrases:\n      en:\n        - Talk to a person\n"
        "        - talk to the PERSON\n",
        6,
        '"talk to the PERSON" is the same phrase as line 5',
    ),
    "key twice": (
        "rules:\n  - name: a\n    intent: refund\n    intent: complaint\n",
        4,
        "`intent` is given twice in this rule (first on line 3)",
    ),
    "unknown intent": (
        "rules:\n  - name: a\n    intent: wants_a_human\n",
        3,
        "`wants_a_human` is not an intent of intents.yaml: the intents are complaint, refund, wants_human",
    ),
    "sentiment of -1": ("rules:\n  - name: a\n    sentiment_below: -1\n", 3, "between -1 and 1"),
    "sentiment of 1.5": ("rules:\n  - name: a\n    sentiment_below: 1.5\n", 3, "between -1 and 1"),
    "sentiment as text": ("rules:\n  - name: a\n    sentiment_below: low\n", 3, "between -1 and 1"),
    "sentiment not a number": ("rules:\n  - name: a\n    sentiment_below: .nan\n", 3, "between -1 and 1"),
    "no fallbacks": ("rules:\n  - name: a\n    fallbacks_in_a_row: 0\n", 3, "1 or more"),
    "fallbacks of 2.5": ("rules:\n  - name: a\n    fallbacks_in_a_row: 2.5\n", 3, "a whole number"),
    "fallbacks as yes": ("rules:\n  - name: a\n    fallbacks_in_a_row: yes\n", 3, "a whole number"),
    "tiers as text": (
        "rules:\n  - name: a\n    intent: refund\n    tiers: gold\n",
        4,
        "`tiers` must be a list of tier names",
    ),
    "no tiers": ("rules:\n  - name: a\n    intent: refund\n    tiers: []\n", 4, "a list of tier names"),
    "a tier not text": ("rules:\n  - name: a\n    intent: refund\n    tiers: [gold, 3]\n", 4, "tier names"),
    "same name": (
        "rules:\n  - name: Upset\n    intent: complaint\n  - name: upset\n    fallbacks_in_a_row: 2\n",
        4,
        "a rule named 'upset' is on line 2 already: rename one",
    ),
}


@pytest.mark.parametrize(("text", "line", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_each_problem_names_its_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "handoff.yaml"
    path.write_text(text)

    _, problems = read_rules(path, INTENTS)

    assert [problem.location for problem in problems] == [f"{path}:{line}"]
    assert message in problems[0].reason
    assert str(problems[0]).startswith(f"{path}:{line}: ")


def test_every_problem_is_reported_in_file_order_and_the_good_rules_kept(tmp_path: Path) -> None:
    path = tmp_path / "handoff.yaml"
    path.write_text(
        GOOD + "  - name: broken\n    intnet: refund\n  - name: also broken\n    sentiment_below: 2\n"
    )

    rules, problems = read_rules(path, INTENTS)

    assert [p.location for p in problems] == [f"{path}:9", f"{path}:10", f"{path}:12"]
    assert [p.reason.split(":")[0] for p in problems] == [
        "rule 'broken' has no condition",
        "unknown key `intnet`",
        "`sentiment_below` must be a number between -1 and 1 (not either), e.g. -0.6",
    ]
    assert [rule.name for rule in rules.rules] == [
        "asks for a person",
        "very upset customer",
        "the AI keeps failing",
    ]


def test_an_intent_rule_without_any_intents_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "handoff.yaml"
    path.write_text("rules:\n  - name: a\n    intent: wants_human\n")

    _, problems = read_rules(path, ())

    assert [p.reason for p in problems] == [
        "`wants_human` is not an intent of intents.yaml: intents.yaml has none"
    ]


# Deciding


@pytest.fixture
def rules(tmp_path: Path) -> HandoffRules:
    return rules_of(tmp_path, GOOD)


def decide(
    rules: HandoffRules,
    *,
    intent: str | None = None,
    sentiment: float | None = None,
    tier: str = "",
    fallbacks_in_a_row: int = 0,
    text: str = "",
) -> HandoffReason | None:
    """`rules.decide` for a message with these facts: by default none a rule looks at."""
    return rules.decide(
        intent=intent, sentiment=sentiment, tier=tier, fallbacks_in_a_row=fallbacks_in_a_row, text=text
    )


def test_an_intent_rule_hands_off_whatever_the_tier(rules: HandoffRules) -> None:
    reason = decide(rules, intent="wants_human", sentiment=0.5)

    assert reason == HandoffReason("intent", "rule 'asks for a person': intent wants_human")
    assert reason.as_record() == {"kind": "intent", "detail": "rule 'asks for a person': intent wants_human"}


def test_a_sentiment_rule_needs_a_lower_score_and_one_of_its_tiers(rules: HandoffRules) -> None:
    upset = decide(rules, sentiment=-0.8316, tier=" GOLD")

    assert upset == HandoffReason(
        "sentiment", "rule 'very upset customer': sentiment -0.8316 below -0.6, tier gold"
    )
    assert decide(rules, sentiment=-0.6, tier="gold") is None  # at the threshold: not below it
    assert decide(rules, sentiment=-0.9, tier="silver") is None
    assert decide(rules, sentiment=-0.9, tier="") is None  # no profile: no tier
    assert decide(rules, sentiment=None, tier="gold") is None  # not English: no sentiment


def test_a_fallback_rule_counts_the_fallbacks_in_a_row(rules: HandoffRules) -> None:
    assert decide(rules, fallbacks_in_a_row=2) is None
    assert decide(rules, fallbacks_in_a_row=3) == HandoffReason(
        "fallbacks", "rule 'the AI keeps failing': 3 fallback replies in a row"
    )
    assert decide(rules, fallbacks_in_a_row=5) is not None


def test_the_first_matching_rule_in_file_order_wins(rules: HandoffRules) -> None:
    everything = decide(rules, intent="wants_human", sentiment=-0.9, tier="platinum", fallbacks_in_a_row=9)
    upset_and_failing = decide(rules, intent="refund", sentiment=-0.9, tier="platinum", fallbacks_in_a_row=9)

    assert [reason.kind if reason else None for reason in (everything, upset_and_failing)] == [
        "intent",
        "sentiment",
    ]


def test_nothing_matches_a_calm_message(rules: HandoffRules) -> None:
    assert decide(rules, intent="refund", sentiment=0.2, tier="gold", fallbacks_in_a_row=1) is None


ANY_OF = """\
rules:
  - name: asks for a person
    phrases:
      en: [human please, talk/speak to/with person/human]
      de: [mit menschen/mitarbeiter sprechen]
    intent: wants_human
  - name: the AI says so
    needs_human: true
    tiers: [gold]
"""


def test_a_rule_applies_when_any_of_its_conditions_holds(tmp_path: Path) -> None:
    rules = rules_of(tmp_path, ANY_OF)

    by_phrase = decide(rules, text="Can I speak with a real person? Order 4411")
    by_intent = decide(rules, text="Mensch, wo ist mein Paket?", intent="wants_human")

    assert by_phrase == HandoffReason(
        "phrase", "rule 'asks for a person': phrase \"talk/speak to/with person/human\" (en, line 4)"
    )
    assert by_intent == HandoffReason("intent", "rule 'asks for a person': intent wants_human")
    assert decide(rules, text="my human resources department needs the invoice") is None
    assert rules.rules[0].describe() == "rule 'asks for a person': 3 phrases (de, en) or intent wants_human"


def test_needs_human_holds_only_after_an_answer_that_says_so(tmp_path: Path) -> None:
    rules = rules_of(tmp_path, ANY_OF)

    assert decide(rules, tier="gold") is None  # before the answer, or without a structured one
    assert rules.decide(
        intent=None, sentiment=None, tier="Gold", fallbacks_in_a_row=0, needs_human=True
    ) == HandoffReason("needs_human", "rule 'the AI says so': the AI's answer says needs_human, tier gold")
    assert rules.decide(intent=None, sentiment=None, tier="", fallbacks_in_a_row=0, needs_human=True) is None
