"""The help-center's search index: per locale, BM25 over the passages' words and their WordLlama vectors,
fused into one score.

The lexical index (bm25s) finds product names, codes and rare words a static embedding blurs; the
vectors find a passage that says the same in other words. Each query's BM25 scores are divided by
their maximum, so both lie in [0, 1], and summed with LEXICAL_WEIGHT, chosen on the labelled set's
dev half (bench/knowledge.py, which also compares reciprocal rank fusion). The index is built once
per change of the articles, never per message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
import numpy.typing as npt
from bm25s import stopwords

from app.knowledge.articles import Article, Passage
from app.prompts.file_format import locale_chain
from app.signals.models import Embedder, Vectors
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
