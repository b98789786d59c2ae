"""The handoff part of the prompt set: the rules loaded with the templates, the handoff template and its
checks, and what it renders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.prompts.handoff_rules import HandoffReason
from app.prompts.library import PromptLibrary
from tests.helpers.template_cases import ADA, GOOD_SYSTEM, GOOD_USER, NOW, load_error, message, write
from tests.helpers.workers import PROMPTS

ASKED = HandoffReason("intent", "rule 'asks for a person': intent wants_human")
FAILING = HandoffReason("fallbacks", "rule 'the AI keeps failing': 3 fallback replies in a row")
HANDOFF_HEADER = "---\nname: {name}\ndescription: A test handoff.\nkind: handoff\n{extra}---\n"


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped templates, samples, intents and handoff rules to change."""
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


def write_handoff(directory: Path, filename: str, body: str, name: str = "handoff", extra: str = "") -> Path:
    path = directory / filename
    path.write_text(HANDOFF_HEADER.format(name=name, extra=extra) + body, encoding="utf-8")
    return path


# The rules come with the set


def test_the_library_carries_the_shipped_rules() -> None:
    rules = PromptLibrary.load(PROMPTS).handoff_rules

    assert [rule.name for rule in rules.rules] == [
        "asks for a person",
        "very upset customer",
        "the AI keeps failing",
        "the AI says so",
    ]
    asked = rules.decide(intent=None, sentiment=None, tier="", fallbacks_in_a_row=0, text="HUMAN PLEASE")
    assert asked is not None
    assert asked.kind == "phrase"


def test_a_directory_without_rules_hands_nothing_off_and_needs_no_handoff_template(prompts: Path) -> None:
    (prompts / "handoff.yaml").unlink()
    (prompts / "handoff.j2").unlink()

    library = PromptLibrary.load(prompts)

    assert library.handoff_rules.rules == ()
    assert {t.kind for t in library.templates} == {"reply", "fallback"}


def test_a_broken_rule_is_a_problem_of_the_set_at_its_line(prompts: Path) -> None:
    path = prompts / "handoff.yaml"
    path.write_text(path.read_text().replace("sentiment_below: -0.6", "sentiment_below: -6"))

    error = load_error(prompts)

    assert error.location == f"{path}:79"
    assert "`sentiment_below` must be a number between -1 and 1" in error.reason


def test_rules_are_checked_against_the_intents_of_the_directory(prompts: Path) -> None:
    path = prompts / "handoff.yaml"
    path.write_text(path.read_text().replace("sentiment_below: -0.6", "intent: wants_human"))
    (prompts / "intents.yaml").write_text("refund:\n  - I want my money back\n")

    _, problems = PromptLibrary.check(prompts)

    assert [(p.location, p.reason) for p in problems] == [
        (
            f"{prompts / 'handoff.yaml'}:79",
            "`wants_human` is not an intent of intents.yaml: the intents are refund",
        )
    ]


def test_rules_need_a_catch_all_handoff_template(prompts: Path) -> None:
    (prompts / "handoff.j2").unlink()
    write_handoff(
        prompts, "handoff_gold.j2", "{% block reply %}Hi.{% endblock %}", extra="when: {tier: gold}\n"
    )

    _, problems = PromptLibrary.check(prompts)

    assert [(p.location, p.reason) for p in problems] == [
        (str(prompts), "handoff.yaml has rules, so a `kind: handoff` template without `when:` is needed")
    ]


# The handoff template


def test_render_handoff_greets_by_name_and_is_sent_as_it_is() -> None:
    library = PromptLibrary.load(PROMPTS)

    known = library.render_handoff(message=message(), customer=ADA, now=NOW, reason=ASKED)
    unknown = library.render_handoff(message=message(), customer={}, now=NOW, reason=FAILING)

    assert (known.template.kind, known.template.path.name) == ("handoff", "handoff.j2")
    assert known.template.sent_as_is
    assert [m["role"] for m in known.messages] == ["assistant"]
    assert known.text.startswith("Hi Ada,\n")
    assert "a member of our team will take over this conversation. " in known.text
    assert unknown.text.startswith("Hi,\n")
    assert "take over this conversation, as I could not help you myself." in unknown.text
    assert known.ref.name == "handoff"


def test_the_handoff_template_sees_the_reason_and_the_signals(prompts: Path) -> None:
    body = "{% block reply %}{{ reason.kind }} / {{ reason.detail }} / {{ signals.intent }}{% endblock %}"
    write_handoff(prompts, "handoff.j2", body)
    library = PromptLibrary.load(prompts)

    rendered = library.render_handoff(
        message=message(), customer=ADA, now=NOW, reason=ASKED, signals={"intent": "wants_human"}
    )

    assert rendered.text == f"intent / {ASKED.detail} / wants_human"


def test_select_and_the_fallback_never_pick_the_handoff_template(prompts: Path) -> None:
    (prompts / "support_reply_gold.j2").unlink()
    write_handoff(
        prompts, "handoff_gold.j2", "{% block reply %}Gold.{% endblock %}", extra="when: {tier: gold}\n"
    )
    library = PromptLibrary.load(prompts)

    assert library.select(message(), ADA).path.name == "support_reply.j2"
    assert (
        library.render_fallback(message=message(), customer=ADA, now=NOW).template.path.name == "fallback.j2"
    )
    gold = library.render_handoff(message=message(), customer=ADA, now=NOW, reason=ASKED)
    assert (gold.template.path.name, gold.text) == ("handoff_gold.j2", "Gold.")
    assert library.pick("handoff", message(), {}).path.name == "handoff.j2"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (GOOD_SYSTEM + GOOD_USER, "missing part {% block reply %}"),
        ("{% block reply %}You wrote: {{ message.text }}{% endblock %}", "`message.text` is customer text"),
        (
            "{% block reply %}{% for turn in history %}x{% endfor %}{% endblock %}",
            "`history` is customer text",
        ),
        ("{% block reply %}{{ reasons.kind }}{% endblock %}", "unknown variable `reasons`"),
    ],
    ids=["reply parts", "message text", "history", "unknown variable"],
)
def test_a_handoff_template_has_the_restrictions_of_a_fallback(
    prompts: Path, body: str, problem: str
) -> None:
    path = write_handoff(prompts, "handoff.j2", body)

    error = load_error(prompts)

    assert error.location.startswith(f"{path}:")
    assert problem in error.reason


def test_only_a_handoff_template_knows_the_reason(prompts: Path) -> None:
    path = prompts / "fallback.j2"
    path.write_text(path.read_text().replace("thank you", "{{ reason.kind }}, thank you"))

    error = load_error(prompts)

    assert error.location.startswith(f"{path}:")
    assert "unknown variable `reason`" in error.reason


def test_two_catch_all_handoff_templates_clash_unless_variants(prompts: Path) -> None:
    write_handoff(prompts, "handoff_other.j2", "{% block reply %}Other.{% endblock %}")

    error = load_error(prompts)

    assert "handoff.j2, handoff_other.j2 apply to the same messages" in error.reason


def test_a_reply_and_a_handoff_with_the_same_conditions_do_not_clash(prompts: Path) -> None:
    write(prompts, "gold_email.j2", GOOD_SYSTEM + GOOD_USER, extra="when: {tier: gold, channel: email}\n")
    write_handoff(
        prompts,
        "handoff_gold_email.j2",
        "{% block reply %}Hi.{% endblock %}",
        extra="when: {tier: gold, channel: email}\n",
    )

    assert PromptLibrary.check(prompts)[1] == []
