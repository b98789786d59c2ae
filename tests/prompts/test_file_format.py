"""The prompt file format: front matter problems point at their line; samples are required."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.template_cases import GOOD_SYSTEM, GOOD_USER, line_of, load_error, write
from tests.helpers.workers import PROMPTS


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped templates and samples to add broken or extra templates to."""
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


def test_missing_front_matter_field_names_the_file(prompts: Path) -> None:
    path = prompts / "nameless.j2"
    path.write_text("---\ndescription: No name.\n---\n" + GOOD_SYSTEM + GOOD_USER, encoding="utf-8")

    error = load_error(prompts)

    assert error.location == f"{path}:1"
    assert "`name` is required" in error.reason


def test_misspelt_front_matter_field_points_at_its_line(prompts: Path) -> None:
    path = write(prompts, "typo.j2", GOOD_SYSTEM + GOOD_USER, extra="model:\n  temprature: 0.2\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'model:')}"
    assert "model.temprature" in error.reason


def test_yaml_surprises_in_front_matter_are_explained(prompts: Path) -> None:
    path = write(prompts, "norway.j2", GOOD_SYSTEM + GOOD_USER, extra="when:\n  locale: no\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'when:')}"
    assert error.reason == "front matter field `when.locale` must be text: put it in quotes"


def test_missing_samples_are_an_error(prompts: Path) -> None:
    shutil.rmtree(prompts / "samples")

    assert "no sample data" in load_error(prompts).reason
