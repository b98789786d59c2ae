"""The signal models, loaded once for the whole session (about 1 s) with the shipped intents."""

from __future__ import annotations

import pytest

from app.signals.models import SignalModels
from tests.helpers.workers import PROMPTS


@pytest.fixture(scope="session")
def models() -> SignalModels:
    return SignalModels.load(PROMPTS)
