"""The `enricher dlq` tests run in a directory of their own: no `.env` file changes their settings."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The commands run in process read `.env` from the working directory: make it an empty one."""
    monkeypatch.chdir(tmp_path)
