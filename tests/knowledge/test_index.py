"""Searching the help-center: the right article for a question, per locale, nothing for small talk."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.knowledge.articles import read_articles
from app.knowledge.index import KnowledgeIndex, words
from app.signals.models import Embedder
from tests.helpers.workers import REPO


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    articles, problems = read_articles(REPO / "knowledge")
    assert problems == []
    return KnowledgeIndex(articles, Embedder())


@pytest.mark.parametrize(
    ("question", "locale", "article"),
    [
        ("Can I return shoes after 40 days?", "en", "returns-policy"),
        ("Is the Pro plan billed yearly?", "en", "plans"),
        ("checkout shows PAY-402", "en", "payment-failed"),
        ("Wird der Pro-Tarif jährlich abgerechnet?", "de-AT", "de-plans"),
        ("¿Cuánto cuesta el envío?", "es", "es-shipping"),
    ],
)
def test_the_best_passage_is_from_the_article_that_answers(
    index: KnowledgeIndex, question: str, locale: str, article: str
) -> None:
    hits = index.search(question, locale, 3)
    assert hits[0].passage.article_id == article
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].as_record()["id"] == article


def test_a_locale_without_articles_is_answered_from_the_english_ones(index: KnowledgeIndex) -> None:
    assert index.search("Is the Pro plan billed yearly?", "it", 1)[0].passage.locale == "en"


@pytest.mark.parametrize("text", ["hello", "ok", "", "   "])
def test_small_talk_finds_no_passage(index: KnowledgeIndex, text: str) -> None:
    assert index.search(text, "en", 3) == []


def test_words_keep_codes_and_drop_stop_words() -> None:
    assert words("The K2 keyboard KB-2201 is broken", "en") == ["k2", "keyboard", "kb", "2201", "broken"]
    assert words("Wann ist die Lieferung da?", "de") == ["wann", "lieferung"]


def test_an_empty_help_center_finds_nothing(tmp_path: Path) -> None:
    assert KnowledgeIndex([], Embedder()).search("Can I return shoes?", "en") == []
