"""`enricher prompts check` reports the intents file with the templates."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from app.main import cli
from tests.helpers.workers import PROMPTS


def check(directory: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["prompts", "check", str(directory)], env={"ENRICHER_MAX_PROMPT_TOKENS": None}
    )
    return result.exit_code, result.output


def test_the_shipped_intents_are_summed_up() -> None:
    code, output = check(PROMPTS)

    assert code == 0, output
    assert re.search(
        rf"^{PROMPTS}/intents.yaml: intents version [0-9a-f]{{12}}; 9 intents, \d+ examples$", output, re.M
    )


def test_a_broken_intents_file_fails_the_check_at_its_line(tmp_path: Path) -> None:
    prompts = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    (prompts / "handoff.yaml").unlink()  # its intent is not in the file written here
    (prompts / "intents.yaml").write_text("refund:\n  - money back\nrefund:\n  - refund me\n")

    code, output = check(prompts)

    assert code == 1
    assert f"{prompts}/intents.yaml:3: intent `refund` is listed twice" in output
    assert output.rstrip().endswith("5 templates, 1 problem(s)")


def test_overlapping_examples_are_warnings_only(tmp_path: Path) -> None:
    prompts = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    (prompts / "handoff.yaml").unlink()  # its intent is not in the file written here
    (prompts / "intents.yaml").write_text(
        "refund:\n  - I want my money back\ncomplaint:\n  - I want my money back now\n"
    )

    code, output = check(prompts)

    assert code == 0, output
    assert f"{prompts}/intents.yaml:4: warning: " in output
