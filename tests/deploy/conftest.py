"""Fixtures of the deployment tests: the worker's settings from a given environment only, and
promtool where it is installed or can be."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from app.settings import Settings, load_settings
from tests.helpers.debian import debian_command
from tests.helpers.envs import LoadSettings


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LoadSettings:
    """Load the worker's settings as `enricher worker` does, from exactly these variables: every
    other variable of the settings is unset and no `.env` file is in the working directory."""

    def load(env: Mapping[str, str]) -> Settings:
        for field in Settings.model_fields.values():
            for name in getattr(field.validation_alias, "choices", ()):
                monkeypatch.delenv(str(name), raising=False)
        monkeypatch.chdir(tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    return load


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, from Debian's `prometheus` package (installed without starting its server where
    it is missing); the test is skipped where it cannot be had."""
    return debian_command("prometheus", "promtool")
