"""The help-center as the worker uses it: checked at once, indexed in the background on the embedder
the signal models share, no passages until then; what a message is searched for."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import Future
from pathlib import Path

import pytest

from app.errors import TemplateError
from app.knowledge.index import BackgroundKnowledge, knowledge_query
from app.schemas import CustomerMessage, HistoryTurn
from app.signals.models import Embedder
from tests.helpers.polling import until
from tests.helpers.workers import REPO

QUESTION = "Can I return an item after 30 days?"


def message(text: str, locale: str = "en") -> CustomerMessage:
    return CustomerMessage(message_id="m-1", conversation_id="c-1", text=text, locale=locale)


def turn(role: str, text: str) -> HistoryTurn:
    return HistoryTurn.model_validate(
        {"role": role, "text": text, "message_id": "m-0", "at": "2026-11-25T04:00:00Z"}
    )


async def test_no_passages_until_the_index_is_built_on_the_shared_embedder() -> None:
    embedder: Future[Embedder] = Future()
    knowledge = BackgroundKnowledge(REPO / "knowledge", embedder)

    assert knowledge.passages_for(message(QUESTION), []) == []
    assert knowledge.problem() == "the help-center is still being indexed"

    embedder.set_result(Embedder())

    async def indexed() -> bool:
        return knowledge.problem() is None

    await until(indexed, "the help-center is indexed")
    hits = knowledge.passages_for(message(QUESTION), [])
    assert hits[0].passage.article_id == "returns-policy"
    assert len(hits) <= 3


async def test_an_embedder_that_fails_to_load_is_the_problem_and_the_watch_ends() -> None:
    embedder: Future[Embedder] = Future()
    knowledge = BackgroundKnowledge(REPO / "knowledge", embedder)
    embedder.set_exception(OSError("no weights"))

    async with asyncio.timeout(10):
        await knowledge.watch()
    assert knowledge.problem() == "the help-center failed to load: OSError: no weights"
    assert knowledge.passages_for(message(QUESTION), []) == []


def test_a_broken_article_stops_the_start_at_once(tmp_path: Path) -> None:
    knowledge = Path(shutil.copytree(REPO / "knowledge", tmp_path / "knowledge"))
    article = knowledge / "en" / "returns-policy.md"
    article.write_text(article.read_text().replace("id: returns-policy", "id: returns policy!"))

    with pytest.raises(TemplateError) as caught:
        BackgroundKnowledge(knowledge, Future())
    assert caught.value.location == f"{article}:2"


def test_a_short_message_is_searched_with_the_customers_previous_turn() -> None:
    history = [turn("customer", "Do you ship to Germany?"), turn("agent", "Yes, in 3 days.")]

    assert knowledge_query(message("and to Austria?"), history) == "Do you ship to Germany?\nand to Austria?"
    assert knowledge_query(message(QUESTION), history) == QUESTION
    assert knowledge_query(message("and to Austria?"), []) == "and to Austria?"
