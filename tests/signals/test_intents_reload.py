"""The intents file is read again when the support team edits it, as the templates are: a clean edit
is matched from the reload on, a broken one is rejected with its line and the last good one serves."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.resources import Resources
from app.settings import Settings
from tests.helpers.workers import PROMPTS

GIFT_CARDS = """
gift_cards:
  - Do you sell gift cards?
  - Can I buy a voucher for a friend
  - Verkaufen Sie Geschenkgutscheine?
"""
ASKED = "Could I purchase a gift card for my sister?"


@pytest.fixture
async def resources(tmp_path: Path) -> AsyncIterator[Resources]:
    prompts = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    settings = Settings.model_validate(
        {
            "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
            "REDIS_URL": "redis://127.0.0.1:1/0",  # never reached: nothing here is answered
            "ENRICHER_PROMPTS_DIR": str(prompts),
        }
    )
    bundle = Resources.build(settings)
    try:
        yield bundle
    finally:
        await bundle.aclose()


def rejected() -> float:
    return REGISTRY.get_sample_value("enricher_template_errors_total") or 0.0


async def test_an_edited_intents_file_is_matched_from_the_reload_on(
    resources: Resources, caplog: pytest.LogCaptureFixture
) -> None:
    assert resources.signals is not None
    models = await resources.signals.get()
    intents = resources.settings.prompts_dir / "intents.yaml"
    shipped = intents.read_text(encoding="utf-8")
    assert models.detect(ASKED).intent != "gift_cards"

    intents.write_text(shipped + GIFT_CARDS, encoding="utf-8")
    assert resources.prompts.reload()

    assert models.detect(ASKED).intent == "gift_cards"
    assert "gift_cards" in models.intent_labels

    before = rejected()
    intents.write_text(shipped + GIFT_CARDS + "gift_cards:\n  - twice\n", encoding="utf-8")
    broken_line = len((shipped + GIFT_CARDS).splitlines()) + 1
    with caplog.at_level(logging.ERROR):
        resources.prompts.reload()

    assert models.detect(ASKED).intent == "gift_cards"  # the last good file keeps serving
    assert rejected() == before + 1
    assert [r.error for r in caplog.records if r.getMessage().startswith("intents rejected")] == [
        f"{intents}:{broken_line}: intent `gift_cards` is listed twice (first on line {broken_line - 4}): "
        "merge the lists"
    ]
