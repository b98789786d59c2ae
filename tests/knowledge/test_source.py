"""Hot reload of the help-center: an edit is searched from the reload on, a broken article changes
nothing and is logged with its file:line."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.errors import TemplateError
from app.knowledge.index import KnowledgeSource
from tests.helpers.files import save
from tests.helpers.polling import until
from tests.helpers.workers import REPO

RELOAD_WITHIN_S = 5.0


@pytest.fixture
def knowledge(tmp_path: Path) -> Path:
    return Path(shutil.copytree(REPO / "knowledge", tmp_path / "knowledge"))


@pytest.fixture
async def source(knowledge: Path) -> AsyncIterator[KnowledgeSource]:
    source = KnowledgeSource.load(knowledge)
    watching = asyncio.create_task(source.watch(interval_s=0.05))
    yield source
    watching.cancel()


async def soon(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition` to hold after a reload."""

    async def holds() -> bool:
        return condition()

    await until(holds, what, RELOAD_WITHIN_S)


def errors() -> float:
    return REGISTRY.get_sample_value("enricher_template_errors_total") or 0.0


def best(source: KnowledgeSource, question: str) -> str:
    hits = source.current.search(question, "en", 1)
    return hits[0].passage.text if hits else ""


async def test_an_edited_and_an_added_article_are_searched_after_the_reload(
    source: KnowledgeSource, knowledge: Path
) -> None:
    article = knowledge / "en" / "gift-cards-promo.md"
    save(article, article.read_text().replace("valid for **3 years**", "valid for **5 years**"))
    await soon(lambda: "5 years" in best(source, "How long is a gift card valid?"), "the edit searched")

    save(knowledge / "en" / "pets.md", "---\nid: pets\ntitle: Pet beds\n---\nHamster hammocks ship flat.\n")
    await soon(lambda: "Hamster" in best(source, "Do hamster hammocks ship flat?"), "the new one searched")


async def test_a_broken_article_keeps_the_last_good_index(
    source: KnowledgeSource, knowledge: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, before = source.current, errors()
    article = knowledge / "en" / "plans.md"
    save(article, article.read_text().replace("title: Basic, Team and Pro plans\n", ""))

    await soon(lambda: errors() == before + 1, "the broken article rejected")

    assert source.current is good
    rejections = [r for r in caplog.records if r.getMessage().startswith("knowledge rejected")]
    assert [r.__dict__["error"] for r in rejections] == [
        f"{article}:1: front matter field `title` is required"
    ]


def test_an_absent_directory_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="ENRICHER_KNOWLEDGE_DIR is not a directory"):
        KnowledgeSource.load(tmp_path / "absent")
