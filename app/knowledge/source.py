"""The help-center in use now: the articles of ENRICHER_KNOWLEDGE_DIR indexed, rebuilt when an article
changes; a broken article is rejected with its `file:line` and the last good index keeps serving.
In the worker the index is built in the background while it starts (`BackgroundKnowledge`), and
`passages_for` is what a message is given."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from app.errors import TemplateError
from app.knowledge.articles import ARTICLE_GLOB, Article, read_articles
from app.knowledge.index import Hit, KnowledgeIndex
from app.last_good import FileStates, LastGood, states_of
from app.schemas import CustomerMessage, HistoryTurn
from app.signals.models import Embedder, in_background

# The help-center passages a prompt carries at most: three short passages hold the answer to a
# support question on the labelled set (bench/results/knowledge.md).
PASSAGES = 3
# A message of fewer words is searched for together with the customer's previous turn.
SHORT_QUERY_WORDS = 4


def article_states(directory: Path) -> FileStates:
    """(name, mtime_ns, size) of every article: any edit, addition or removal changes it."""
    return states_of(directory.glob(ARTICLE_GLOB))


def load_index(directory: Path, embedder: Embedder) -> KnowledgeIndex:
    """The index of every article of `directory`; the first TemplateError if any article is broken."""
    return KnowledgeIndex(checked_articles(directory), embedder)


def checked_articles(directory: Path) -> list[Article]:
    """The articles of `directory`; TemplateError when it is absent or an article of it is broken
    (the first problem)."""
    if not directory.is_dir():
        raise TemplateError("ENRICHER_KNOWLEDGE_DIR is not a directory", str(directory))
    articles, problems = read_articles(directory)
    if problems:
        raise problems[0]
    return articles


def knowledge_query(message: CustomerMessage, history: Sequence[HistoryTurn]) -> str:
    """What the help-center is searched for: the customer's text, after the customer's previous turn
    when the text alone is too short to say what it is about ("and to Austria?")."""
    earlier = [turn.text for turn in history if turn.role == "customer"]
    if len(message.text.split()) >= SHORT_QUERY_WORDS or not earlier:
        return message.text
    return f"{earlier[-1]}\n{message.text}"


def passages_for(
    index: KnowledgeIndex, message: CustomerMessage, history: Sequence[HistoryTurn]
) -> list[Hit]:
    """The passages the worker gives `message` (as the prompt shows it: masked, with its locale),
    best first, at most PASSAGES."""
    return index.search(knowledge_query(message, history), message.locale, PASSAGES)


class KnowledgeSource(LastGood[KnowledgeIndex]):
    """Holds the last good KnowledgeIndex of a directory; its embedder is loaded once and kept."""

    def __init__(self, directory: Path, embedder: Embedder) -> None:
        # The first load raises: a broken help-center stops the worker at start, as templates do.
        super().__init__(
            directory,
            load_index(directory, embedder),
            lambda path: load_index(path, embedder),
            article_states,
            "knowledge",
        )

    @classmethod
    def load(cls, directory: Path) -> KnowledgeSource:
        """Load WordLlama and index the directory; TemplateError if it is absent or an article is
        broken."""
        checked_articles(directory)
        return cls(directory, Embedder())

    def summary(self) -> dict[str, object]:
        """The articles and passages a reload brought."""
        return {"articles": len(self.current.articles), "passages": self.current.passage_count}


class BackgroundKnowledge:
    """The help-center as the worker uses it: its articles checked at once (a broken one stops the
    worker at start with its `file:line`, TemplateError), their index built in a thread on
    `embedder` (WordLlama, shared with the signal models) while the worker starts. Until the index
    is built a message gets no passages."""

    def __init__(self, directory: Path, embedder: Future[Embedder]) -> None:
        checked_articles(directory)
        self._loading = in_background(lambda: KnowledgeSource(directory, embedder.result()), "knowledge")

    def problem(self) -> str | None:
        """Why the help-center cannot answer yet (indexing, or failed to), for readiness; None once
        it can."""
        if not self._loading.done():
            return "the help-center is still being indexed"
        error = self._loading.exception()
        return None if error is None else f"the help-center failed to load: {type(error).__name__}: {error}"

    def passages_for(self, message: CustomerMessage, history: Sequence[HistoryTurn]) -> list[Hit]:
        """The passages for `message` (see `passages_for`); none while the index is being built."""
        if self.problem() is not None:
            return []
        return passages_for(self._loading.result().current, message, history)

    async def watch(self) -> None:
        """Once the index is built, reload it whenever an article changes, until cancelled; nothing
        when it failed to build (`problem` says why, and readiness with it)."""
        await asyncio.wait([asyncio.wrap_future(self._loading)])
        if self.problem() is None:
            await self._loading.result().watch()
