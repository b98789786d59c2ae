"""`enricher prompts check` reports the handoff rules with the templates: each rule, each problem at its
line."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from app.main import cli
from tests.helpers.workers import PROMPTS


def check(directory: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(
        cli, ["prompts", "check", str(directory)], env={"ENRICHER_MAX_PROMPT_TOKENS": None}
    )
    return result.exit_code, result.output.splitlines()


def test_the_shipped_rules_are_listed_at_their_lines() -> None:
    code, lines = check(PROMPTS)

    assert code == 0, lines
    rules = PROMPTS / "handoff.yaml"
    assert re.fullmatch(rf"{rules}: handoff rules version [0-9a-f]{{12}}; 4 rules", lines[-6])
    assert lines[-5:] == [
        f"{rules}:40: rule 'asks for a person': 32 phrases (de, en, es, fr)",
        f"{rules}:78: rule 'very upset customer': sentiment below -0.6, only tiers gold, platinum",
        f"{rules}:81: rule 'the AI keeps failing': 3 fallback replies in a row",
        f"{rules}:87: rule 'the AI says so': the AI's answer says needs_human",
        "5 templates, no problems",
    ]
    assert any(re.match(rf"{PROMPTS}/handoff.j2: handoff \(handoff\) version ", line) for line in lines)


def test_a_broken_rule_fails_the_check_at_its_line(prompts: Path) -> None:
    rules = prompts / "handoff.yaml"
    rules.write_text(rules.read_text().replace("    phrases:\n", "    tier: gold\n    phrases:\n"))

    code, lines = check(prompts)

    assert code == 1
    assert f"{rules}:41: unknown key `tier`: did you mean `tiers`?" in lines
    assert not any(": rule 'asks for a person'" in line for line in lines)  # only the rules that are right
    assert f"{rules}:79: rule 'very upset customer': sentiment below -0.6, only tiers gold, platinum" in lines
    assert lines[-1] == "5 templates, 1 problem(s); token counts once all load"


def test_rules_without_a_handoff_template_fail_the_check(prompts: Path) -> None:
    (prompts / "handoff.j2").unlink()

    code, lines = check(prompts)

    assert code == 1
    assert (
        f"{prompts}: handoff.yaml has rules, so a `kind: handoff` template without `when:` is needed" in lines
    )


def test_without_a_rules_file_nothing_is_handed_off(prompts: Path) -> None:
    (prompts / "handoff.yaml").unlink()

    code, lines = check(prompts)

    assert code == 0, lines
    assert f"{prompts}/handoff.yaml: no such file, so no conversation is handed to a human" in lines


def test_a_phrase_that_would_hand_over_a_near_miss_is_warned_of_and_passes(prompts: Path) -> None:
    rules = prompts / "handoff.yaml"
    rules.write_text(rules.read_text().replace("      en:\n", "      en:\n        - real person\n"))

    code, lines = check(prompts)

    assert code == 0, lines
    assert [line for line in lines if "warning: the phrase" in line] == [
        f'{rules}:43: warning: the phrase "real person" would hand over "Is this a real person?", '
        "which asks for no person: make it longer"
    ]
