"""The signal models, loaded once for the whole session (about 1 s) with the shipped intents."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.signals.models import SignalModels

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


@pytest.fixture(scope="session")
def models() -> SignalModels:
    return SignalModels.load(PROMPTS)
