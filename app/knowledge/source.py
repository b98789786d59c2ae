"""The help-center in use now: the articles of ENRICHER_KNOWLEDGE_DIR indexed, rebuilt when an article
changes; a broken article is rejected with its `file:line` and the last good index keeps serving."""

from __future__ import annotations

from pathlib import Path

from app.errors import TemplateError
from app.knowledge.articles import ARTICLE_GLOB, read_articles
from app.knowledge.index import KnowledgeIndex
from app.last_good import FileStates, LastGood, states_of
from app.signals.embedding import Embedder


def article_states(directory: Path) -> FileStates:
    """(name, mtime_ns, size) of every article: any edit, addition or removal changes it."""
    return states_of(directory.glob(ARTICLE_GLOB))


def load_index(directory: Path, embedder: Embedder) -> KnowledgeIndex:
    """The index of every article of `directory`; the first TemplateError if any article is broken."""
    articles, problems = read_articles(directory)
    if problems:
        raise problems[0]
    return KnowledgeIndex(articles, embedder)


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
        if not directory.is_dir():
            raise TemplateError("ENRICHER_KNOWLEDGE_DIR is not a directory", str(directory))
        return cls(directory, Embedder())

    def summary(self) -> dict[str, object]:
        """The articles and passages a reload brought."""
        return {"articles": len(self.current.articles), "passages": self.current.passage_count}
