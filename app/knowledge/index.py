"""The help-center in use now, and its search: the articles of ENRICHER_KNOWLEDGE_DIR indexed,
rebuilt when an article changes (a broken article is rejected with its `file:line` and the last
good index keeps serving), and the passages a message is given (`passages_for`). In the worker
the index is built in the background while it starts (`BackgroundKnowledge`).

The index holds, per locale, BM25 over the passages' words and their WordLlama vectors, fused
into one score. The lexical index (bm25s) finds product names, codes and rare words a static
embedding blurs; the vectors find a passage that says the same in other words. Each query's BM25
scores are divided by their maximum, so both lie in [0, 1], and summed with LEXICAL_WEIGHT,
chosen on the labelled set's dev half (bench/knowledge.py, which also compares reciprocal rank
fusion). The index is built once per change of the articles, never per message.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import numpy.typing as npt
from bm25s import stopwords

from app.errors import TemplateError
from app.knowledge.articles import ARTICLE_GLOB, Article, Passage, read_articles
from app.last_good import FileStates, LastGood, states_of
from app.prompts.file_format import locale_chain
from app.schemas import CustomerMessage, HistoryTurn
from app.signals.models import Embedder, Vectors, in_background
from app.tokens import count_text

Scores = npt.NDArray[np.float32]

# Chosen on the labelled set's dev half (bench/knowledge.py): the vectors carry most of the meaning,
# BM25 adds the exact names and codes (PAY-402, KB-2201) a static embedding blurs.
LEXICAL_WEIGHT = 0.2
# A passage scoring below this is not worth a prompt's tokens: it leaves "hello" and "thanks!"
# without passages and cut no answerable dev question.
MIN_SCORE = 0.3
WORD = re.compile(r"\w\w+")
STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(stopwords.STOPWORDS_EN),
    "de": frozenset(stopwords.STOPWORDS_GERMAN),
    "fr": frozenset(stopwords.STOPWORDS_FRENCH),
    "es": frozenset(stopwords.STOPWORDS_SPANISH),
    "it": frozenset(stopwords.STOPWORDS_ITALIAN),
    "nl": frozenset(stopwords.STOPWORDS_DUTCH),
    "pt": frozenset(stopwords.STOPWORDS_PORTUGUESE),
}
# The help-center passages a prompt carries at most: three short passages hold the answer to a
# support question on the labelled set (bench/results/knowledge.md).
PASSAGES = 3
# A message of fewer words is searched for together with the customer's previous turn.
SHORT_QUERY_WORDS = 4


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found for a query, with its fused score in [0, 1]."""

    passage: Passage
    score: float

    @property
    def text(self) -> str:
        """What a prompt carries of the passage: its heading path, then its text."""
        return f"{self.passage.heading}\n{self.passage.text}"

    def tokens(self, model: str) -> int:
        """The tokens `text` takes in a prompt to `model`."""
        return count_text(self.text, model)

    def as_record(self) -> dict[str, str | float]:
        """The template variable `knowledge`'s item: `{id, title, text, score}` (text with its headings)."""
        return {
            "id": self.passage.article_id,
            "title": self.passage.title,
            "text": self.text,
            "score": round(self.score, 3),
        }


def words(text: str, locale: str) -> list[str]:
    """The words BM25 counts: lower-cased runs of two or more letters or digits, without the locale's
    stop words (`KB-75` gives `kb`, `75`)."""
    stop = STOPWORDS.get(locale.split("-")[0], frozenset())
    return [word for word in WORD.findall(text.casefold()) if word not in stop]


class _LocaleIndex:
    """The passages of one locale, their BM25 index and their unit vectors."""

    def __init__(self, locale: str, passages: Sequence[Passage], vectors: Vectors) -> None:
        self.locale = locale
        self.passages = tuple(passages)
        self.vectors = vectors
        self.lexical = bm25s.BM25()
        self.lexical.index([words(_searched_text(p), locale) for p in passages], show_progress=False)

    def scores(self, query: str, vector: Vectors) -> tuple[Scores, Scores]:
        """Each passage's BM25 score divided by the best one's (zeros when no word matches), and its
        cosine similarity to the query."""
        ids = self.lexical.get_tokens_ids(words(query, self.locale))
        lexical: Scores = (
            self.lexical.get_scores_from_ids(ids) if ids else np.zeros(len(self.passages), np.float32)
        )
        top = float(lexical.max(initial=0.0))
        return (lexical / top if top > 0 else lexical), self.vectors @ vector


class KnowledgeIndex:
    """Every passage of a set of articles, searchable per locale; immutable, so rebuild on change."""

    def __init__(
        self,
        articles: Sequence[Article],
        embedder: Embedder,
        lexical_weight: float = LEXICAL_WEIGHT,
        min_score: float = MIN_SCORE,
    ) -> None:
        self.articles = tuple(articles)
        self.lexical_weight = lexical_weight
        self.min_score = min_score
        self._embedder = embedder
        by_locale: dict[str, list[Passage]] = {}
        for article in articles:
            by_locale.setdefault(article.locale, []).extend(article.passages)
        self._locales = {
            locale: _LocaleIndex(locale, passages, embedder.embed([_searched_text(p) for p in passages]))
            for locale, passages in by_locale.items()
        }

    @property
    def passage_count(self) -> int:
        """How many passages the index holds, in every locale."""
        return sum(len(index.passages) for index in self._locales.values())

    def search(self, text: str, locale: str = "en", k: int = 3) -> list[Hit]:
        """The `k` passages best matching `text`, best first, each scoring at least `min_score`.

        The articles of the message's locale answer it (`de-AT`: `de-at`, else `de`); a locale with
        no articles is answered from the English ones.
        """
        found = self.scores(text, locale)
        if found is None:
            return []
        passages, lexical, dense = found
        fused = self.lexical_weight * lexical + (1 - self.lexical_weight) * dense
        best = np.argsort(-fused, kind="stable")[:k]
        return [Hit(passages[i], float(fused[i])) for i in best if fused[i] >= self.min_score]

    def scores(self, text: str, locale: str) -> tuple[tuple[Passage, ...], Scores, Scores] | None:
        """The passages that answer `locale`, with their lexical and dense scores for `text` (see
        `search`, which fuses them; bench/knowledge.py compares fusions); None when none can."""
        index = next((self._locales[tag] for tag in locale_chain(locale) if tag in self._locales), None)
        if index is None or not text.strip():
            return None
        return (index.passages, *index.scores(text, self._embedder.embed([text])[0]))


def _searched_text(passage: Passage) -> str:
    """What a passage is found by: its heading path, its article's tags and its text."""
    return "\n".join((passage.heading, " ".join(passage.tags), passage.text))


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
