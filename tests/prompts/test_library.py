"""The prompt library: loading and checking the template set, selection and variants."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from app.prompts.library import PromptLibrary, PromptTemplate
from app.schemas import CustomerMessage
from tests.helpers.template_cases import ADA, BOB, GOOD_SYSTEM, GOOD_USER, NOW, load_error, message, write
from tests.helpers.workers import PROMPTS


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped templates and samples to add broken or extra templates to."""
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


# Loading and checking the set


def test_shipped_templates_load() -> None:
    library = PromptLibrary.load(PROMPTS)

    kinds = Counter((t.name, t.kind) for t in library.templates)
    assert kinds == {("support_reply", "reply"): 3, ("fallback", "fallback"): 1, ("handoff", "handoff"): 1}
    assert all(len(t.version) == 12 and int(t.version, 16) >= 0 for t in library.templates)
    assert PromptLibrary.check(PROMPTS) == (list(library.templates), [])


def test_check_reports_every_problem_and_keeps_the_good_templates(prompts: Path) -> None:
    write(
        prompts,
        "one.j2",
        "{% block system %}{{ oops }}{% endblock %}" + GOOD_USER,
        extra="when: {channel: a}\n",
    )
    write(
        prompts,
        "two.j2",
        "{% block system %}{% endblock %}{% block user %}{{ nope }}{% endblock %}",
        extra="when: {channel: b}\n",
    )

    templates, problems = PromptLibrary.check(prompts)

    assert [Path(p.location.split(":")[0]).name for p in problems] == ["one.j2", "two.j2"]
    assert {t.path.name for t in templates} == {
        "support_reply.j2",
        "support_reply_complaint.j2",
        "support_reply_gold.j2",
        "fallback.j2",
        "handoff.j2",
    }


def test_required_templates_must_exist(prompts: Path) -> None:
    (prompts / "support_reply.j2").unlink()
    (prompts / "fallback.j2").unlink()

    _, problems = PromptLibrary.check(prompts)

    assert [p.reason for p in problems] == [
        "no `support_reply` template without `when:`",
        "no `kind: fallback` template without `when:`",
    ]


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        (lambda s: s.replace("{% endblock %}", "{% if true %}\n{% endblock %}", 1), "is not closed"),
        (lambda s: s.replace("{% endblock %}", "{{ customer.name }}\n{% endblock %}", 1), "may be missing"),
        (lambda s: s.replace("name:", "nme:", 1), "`name` is required"),
        (lambda s: s.replace("---\n", "", 1), "must start with a '---' line"),
    ],
    ids=["syntax", "render", "front matter", "no front matter"],
)
def test_a_broken_required_file_is_reported_alone(
    prompts: Path, broken: Callable[[str], str], problem: str
) -> None:
    for filename in ("support_reply.j2", "fallback.j2"):
        path = prompts / filename
        original = path.read_text(encoding="utf-8")
        path.write_text(broken(original), encoding="utf-8")

        _, problems = PromptLibrary.check(prompts)

        assert [p.location.split(":")[0] for p in problems] == [str(path)], problems
        assert problem in problems[0].reason
        path.write_text(original, encoding="utf-8")


def test_a_broken_file_still_counts_in_the_clash_check(prompts: Path) -> None:
    write(prompts, "another.j2", "{% block system %}\n{% if %}\n{% endblock %}\n" + GOOD_USER)

    _, problems = PromptLibrary.check(prompts)

    assert [Path(p.location.split(":")[0]).name for p in problems] == ["another.j2", "support_reply.j2"]
    assert "another.j2, support_reply.j2 apply to the same messages" in problems[1].reason


# Selection and variants


def test_selection_picks_the_most_specific_match(prompts: Path) -> None:
    write(prompts, "gold_email.j2", GOOD_SYSTEM + GOOD_USER, extra="when: {tier: gold, channel: email}\n")
    library = PromptLibrary.load(prompts)

    def chosen(customer: dict[str, str], channel: str) -> str:
        return library.select(message(channel=channel), customer).path.name

    assert chosen(BOB, "chat") == "support_reply.j2"
    assert chosen({}, "email") == "support_reply.j2"
    assert chosen(ADA, "chat") == "support_reply_gold.j2"
    assert chosen({"tier": "Gold"}, "chat") == "support_reply_gold.j2"
    assert chosen(ADA, "email") == "gold_email.j2"


def test_locale_falls_back_to_english(prompts: Path) -> None:
    write(prompts, "german.j2", GOOD_SYSTEM + GOOD_USER, extra="when: {locale: de}\n")
    library = PromptLibrary.load(prompts)

    def chosen(locale: str, customer: dict[str, str]) -> str:
        return library.select(message(locale=locale), customer).path.name

    assert chosen("de", BOB) == "german.j2"
    assert chosen("de-AT", BOB) == "german.j2"
    assert chosen("de", ADA) == "german.j2"
    assert chosen("fr", BOB) == "support_reply.j2"
    assert chosen("fr", ADA) == "support_reply_gold.j2"
    assert chosen("en", BOB) == "support_reply.j2"


def test_signals_choose_by_intent_and_language_and_reach_the_template(prompts: Path) -> None:
    refund_user = (
        "{% block user %}{{ signals.intent }} {{ signals.sentiment }} {{ message.text }}{% endblock %}"
    )
    write(prompts, "refund.j2", GOOD_SYSTEM + refund_user, extra="when: {intent: refund}\n")
    write(prompts, "german.j2", GOOD_SYSTEM + GOOD_USER, extra="when: {language: de}\n")
    write(prompts, "gold_refund.j2", GOOD_SYSTEM + GOOD_USER, extra="when: {tier: gold, intent: refund}\n")
    library = PromptLibrary.load(prompts)
    refund = {"language": "en", "sentiment": -0.4, "intent": "refund", "pii": []}

    def chosen(customer: dict[str, str], signals: dict[str, object] | None) -> str:
        return library.select(message(), customer, signals).path.name

    assert chosen(BOB, refund) == "refund.j2"
    assert chosen(ADA, refund) == "gold_refund.j2"
    assert chosen(BOB, {**refund, "intent": "Refund"}) == "refund.j2"  # normalised like the rest
    assert chosen(BOB, {**refund, "intent": "cancel", "language": "de"}) == "german.j2"
    assert chosen(BOB, None) == "support_reply.j2"
    template = library.select(message(), BOB, refund)
    rendered = library.render(template, message=message(), customer=BOB, history=[], now=NOW, signals=refund)
    assert rendered.messages[-1]["content"].startswith("refund -0.4 ")


def test_a_template_may_not_use_an_unknown_signal_without_a_guard(prompts: Path) -> None:
    write(
        prompts,
        "odd.j2",
        GOOD_SYSTEM + "{% block user %}{{ signals.mood }}{% endblock %}",
        extra="when: {channel: x}\n",
    )
    _, problems = PromptLibrary.check(prompts)
    assert [Path(p.location.split(":")[0]).name for p in problems] == ["odd.j2"]


def test_variants_are_sticky_and_follow_the_weights(prompts: Path) -> None:
    (prompts / "support_reply_gold.j2").unlink()
    for variant, weight in (("short", 3), ("long", 1)):
        extra = f"variant: {variant}\nweight: {weight}\nwhen: {{tier: gold}}\n"
        write(prompts, f"gold_{variant}.j2", GOOD_SYSTEM + GOOD_USER, extra=extra)
    library, reloaded = PromptLibrary.load(prompts), PromptLibrary.load(prompts)

    def assigned(in_library: PromptLibrary, conversation_id: str) -> PromptTemplate:
        msg = CustomerMessage(message_id="m", conversation_id=conversation_id, text="Hi")
        return in_library.select(msg, ADA)

    ids = [f"conversation-{n}" for n in range(1000)]
    counts = Counter(assigned(library, c).variant for c in ids)
    assert abs(counts["short"] / 1000 - 0.75) < 0.05
    assert abs(counts["long"] / 1000 - 0.25) < 0.05
    assert all(assigned(library, c) == assigned(reloaded, c) for c in ids)
    picked = assigned(library, "conversation-7")
    rendered = library.render(picked, message=message(), customer=ADA, history=[], now=NOW)
    assert rendered.ref.variant == picked.variant


def test_templates_for_the_same_messages_must_be_variants(prompts: Path) -> None:
    write(prompts, "another_gold.j2", GOOD_SYSTEM + GOOD_USER, extra="when: {tier: gold}\n")

    error = load_error(prompts)

    assert error.location == str(prompts / "support_reply_gold.j2")
    assert "another_gold.j2, support_reply_gold.j2 apply to the same messages" in error.reason
