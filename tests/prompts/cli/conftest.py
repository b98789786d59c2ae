"""What every `enricher prompts` test runs on: a copy of the shipped templates, and no configuration
from this machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers.workers import PROMPTS


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped templates and samples to break or extend."""
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


@pytest.fixture(autouse=True)
def no_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the developer's environment nor a `.env` file changes what the commands see."""
    for variable in os.environ:
        if variable.startswith(("ENRICHER_", "REDIS_", "OPENAI_", "KAFKA_")):
            monkeypatch.delenv(variable)
    monkeypatch.chdir(tmp_path)
