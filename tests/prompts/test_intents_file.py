"""Reading prompts/intents.yaml: each mistake reported at its line, the rest still usable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import TemplateError
from app.prompts.intents_file import load_intents, read_intents
from tests.helpers.workers import PROMPTS

BROKEN = {
    "invalid YAML": ("refund:\n  - money back\ncancel: [oops\n", 4, "not valid YAML"),
    "intent twice": (
        "refund:\n  - money back\ncancel:\n  - stop it\nrefund:\n  - refund me\n",
        5,
        "listed twice (first on line 1)",
    ),
    "no examples": ("refund:\ncancel:\n  - stop it\n", 1, "`refund` has no examples"),
    "empty list": ("refund: []\ncancel:\n  - stop it\n", 1, "`refund` has no examples"),
    "number": ("refund:\n  - money back\n  - 42\n", 3, "not text"),
    "yes is a boolean": ("refund:\n  - money back\n  - yes\n", 3, "not text"),
    "mapping as example": ("refund:\n  - money back\n  - {a: b}\n", 3, "not text"),
    "empty string": ("refund:\n  - money back\n  - '  '\n", 3, "empty"),
    "same example twice": (
        "refund:\n  - Money back\ncancel:\n  - money  back\n",
        4,
        "already an example of `refund` (line 2)",
    ),
    "bad name": ("Refund Me:\n  - money back\n", 1, "cannot be an intent name"),
    "unknown is reserved": ("unknown:\n  - money back\n", 1, "`unknown` is what messages like no intent get"),
    "not a mapping": ("- money back\n", 1, "must be intent names"),
    "empty file": ("# nothing yet\n", 1, "no intents"),
}


@pytest.mark.parametrize(("text", "line", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_each_problem_names_its_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text(text)

    _, problems = read_intents(path)

    assert [problem.location for problem in problems] == [f"{path}:{line}"]
    assert message in problems[0].reason
    with pytest.raises(TemplateError, match=f"^{path}:{line}: "):
        load_intents(path)


def test_the_usable_part_is_kept_around_a_mistake(tmp_path: Path) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text("refund:\n  - money back\n  - 42\ncancel:\n  - stop   it\n")

    intents, problems = read_intents(path)

    assert len(problems) == 1
    assert intents.names == ("refund", "cancel")
    assert [(e.intent, e.text, e.line) for e in intents.examples] == [
        ("refund", "money back", 2),
        ("cancel", "stop it", 5),
    ]


def test_the_shipped_file_is_clean_and_covers_the_languages() -> None:
    intents = load_intents(PROMPTS / "intents.yaml")

    assert {"order_status", "refund", "cancel", "complaint", "wants_human"} <= set(intents.names)
    assert all(sum(e.intent == name for e in intents.examples) >= 8 for name in intents.names)
