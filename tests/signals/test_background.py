"""The embedded models load in the background; readiness says so until they can answer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.errors import TemplateError
from app.signals.models import BackgroundModels, Embedder, in_background
from tests.helpers.workers import PROMPTS


async def test_the_models_answer_once_loaded_and_say_why_not_before() -> None:
    models = BackgroundModels(PROMPTS, in_background(Embedder, "embedder"))
    assert models.problem() in (None, "the embedded models are still loading")
    loaded = await models.get()
    assert models.problem() is None
    assert loaded.detect("Wo ist meine Bestellung?").language == "de"


def test_a_broken_intents_file_is_refused_at_once_with_its_line(tmp_path: Path) -> None:
    prompts = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    (prompts / "intents.yaml").write_text("refund:\n  - I want my money back\nrefund:\n  - again\n")
    with pytest.raises(TemplateError) as caught:
        BackgroundModels(prompts, in_background(Embedder, "embedder"))
    assert "intents.yaml:3" in str(caught.value)
