"""The help-center search measured: right article in the top 3, CPU per retrieval, index build time.

The labelled questions (bench/data/knowledge_questions.yaml) are split in two: the fusion of the
lexical and dense scores, and the least score a passage needs, are chosen on the `dev` half; the
accuracy reported is the `test` half's, with the values the worker ships (app/knowledge/index.py),
beside the best the dev half would pick, pure BM25, pure vectors and reciprocal rank fusion.

`python -m bench.knowledge` writes bench/results/knowledge.md and knowledge.json.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from app.knowledge.articles import read_articles
from app.knowledge.index import LEXICAL_WEIGHT, MIN_SCORE, KnowledgeIndex, Scores
from app.signals.models import Embedder
from bench.report import machine, save
from bench.signals import cold_cpu, quantiles

ROOT = Path(__file__).resolve().parents[1]
KNOWLEDGE = ROOT / "knowledge"
QUESTIONS = ROOT / "bench" / "data" / "knowledge_questions.yaml"
TOP = 3
WEIGHTS = tuple(round(w, 2) for w in np.arange(0, 1.01, 0.1))
FLOORS = (0.0, 0.25, 0.3, 0.35, 0.4, 0.45)
RRF_K = 60  # the constant of Cormack et al.'s reciprocal rank fusion
BUILD_ROUNDS = 5

Fusion = Callable[[Scores, Scores], Scores]


@dataclass(frozen=True)
class Question:
    """A labelled question: its text, locale, the article that answers it (None: none does), its half."""

    text: str
    locale: str
    article: str | None
    split: str


def read_questions(path: Path) -> list[Question]:
    """The labelled set."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Question(q["q"], q["locale"], q["article"], q["split"]) for q in document["questions"]]


def weighted(weight: float) -> Fusion:
    """The worker's fusion: `weight` times the normalised BM25 score plus the rest times the cosine."""
    return lambda lexical, dense: weight * lexical + (1 - weight) * dense


def reciprocal_rank(lexical: Scores, dense: Scores) -> Scores:
    """Reciprocal rank fusion: 1/(60 + rank) summed over both rankings."""
    fused: Scores = np.zeros(len(lexical), np.float32)
    for scores in (lexical, dense):
        ranks = np.empty(len(scores))
        ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        fused += 1 / (RRF_K + ranks)
    return fused


def top_articles(index: KnowledgeIndex, question: Question, fusion: Fusion, floor: float) -> list[str]:
    """The articles of the TOP passages `fusion` ranks first, those scoring under `floor` left out."""
    found = index.scores(question.text, question.locale)
    if found is None:
        return []
    passages, lexical, dense = found
    fused = fusion(lexical, dense)
    best = np.argsort(-fused, kind="stable")[:TOP]
    return [passages[i].article_id for i in best if fused[i] >= floor]


@dataclass(frozen=True)
class Score:
    """How a fusion did on some questions: answerable ones found in the top 3, others left empty."""

    found: int
    answerable: int
    empty: int
    unanswerable: int

    @property
    def accuracy(self) -> float:
        """Share of answerable questions whose article is in the top 3."""
        return self.found / self.answerable if self.answerable else 0.0


def score(index: KnowledgeIndex, questions: Sequence[Question], fusion: Fusion, floor: float) -> Score:
    """`fusion` with `floor` on `questions`."""
    found = empty = 0
    for question in questions:
        articles = top_articles(index, question, fusion, floor)
        if question.article is None:
            empty += not articles
        else:
            found += question.article in articles
    answerable = sum(q.article is not None for q in questions)
    return Score(found, answerable, empty, len(questions) - answerable)


def tuned(index: KnowledgeIndex, dev: Sequence[Question]) -> tuple[float, float, Score]:
    """The weight and floor that do best on `dev`: most articles found, then most off-topic
    questions left empty, then the weight nearest an even split."""
    ranked = []
    for weight in WEIGHTS:
        for floor in FLOORS:
            result = score(index, dev, weighted(weight), floor)
            ranked.append(((result.found, result.empty, -abs(weight - 0.5), floor), weight, floor, result))
    _, weight, floor, result = max(ranked, key=lambda row: row[0])
    return weight, floor, result


def main() -> None:
    """Measure, and write bench/results/knowledge.md and .json."""
    host = machine()
    articles, problems = read_articles(KNOWLEDGE)
    if problems:
        raise SystemExit("\n".join(map(str, problems)))
    embedder = Embedder()
    builds = []
    for _ in range(BUILD_ROUNDS):
        start = time.process_time()
        index = KnowledgeIndex(articles, embedder)
        builds.append((time.process_time() - start) * 1000)
    start = time.process_time()
    read_articles(KNOWLEDGE)
    read_ms = (time.process_time() - start) * 1000
    questions = read_questions(QUESTIONS)
    dev = [q for q in questions if q.split == "dev"]
    test = [q for q in questions if q.split == "test"]
    weight, floor, on_dev = tuned(index, dev)
    fusions: dict[str, tuple[Fusion, float]] = {
        f"shipped: {LEXICAL_WEIGHT:.1f} BM25 + {1 - LEXICAL_WEIGHT:.1f} vectors, floor {MIN_SCORE}": (
            weighted(LEXICAL_WEIGHT),
            MIN_SCORE,
        ),
        f"best on dev: {weight:.1f} BM25 + {1 - weight:.1f} vectors, floor {floor}": (
            weighted(weight),
            floor,
        ),
        "BM25 alone": (weighted(1.0), 0.0),
        "vectors alone": (weighted(0.0), 0.0),
        "reciprocal rank fusion": (reciprocal_rank, 0.0),
    }
    rows = {name: score(index, test, fusion, cut) for name, (fusion, cut) in fusions.items()}
    texts = [q.text for q in questions]
    warm = [timed(index, q.text, q.locale) for _ in range(20) for q in questions]
    cold = cold_cpu(lambda text: index.search(text, "en"), texts)
    missed = [
        q
        for q in test
        if q.article is not None
        and q.article not in top_articles(index, q, weighted(LEXICAL_WEIGHT), MIN_SCORE)
    ]
    document = {
        "host": host,
        "articles": len(articles),
        "passages": index.passage_count,
        "questions": {"dev": len(dev), "test": len(test)},
        "build_ms": builds,
        "read_ms": read_ms,
        "tuned_on_dev": {"lexical_weight": weight, "min_score": floor, "accuracy": on_dev.accuracy},
        "test": {name: vars(s) | {"accuracy": s.accuracy} for name, s in rows.items()},
        "cpu_ms_warm": quantiles(warm),
        "cpu_ms_cold": cold,
        "missed": [{"q": q.text, "article": q.article} for q in missed],
    }
    sizes = f"{len(articles)} articles, {index.passage_count} passages (knowledge/); {len(dev)} dev and "
    sizes += f"{len(test)} test questions (bench/data/knowledge_questions.yaml)."
    cost = {
        "one retrieval, warm (p50 / p99)": quantiles(warm),
        "one retrieval, cold caches (p50 / p99)": cold,
    }
    save("knowledge", document, markdown(sizes, rows, cost, builds, read_ms, missed, host))


def timed(index: KnowledgeIndex, text: str, locale: str) -> float:
    """CPU milliseconds of one search."""
    start = time.process_time()
    index.search(text, locale)
    return (time.process_time() - start) * 1000


def markdown(
    sizes: str,
    rows: Mapping[str, Score],
    cost: Mapping[str, Mapping[str, float]],
    builds: Sequence[float],
    read_ms: float,
    missed: Sequence[Question],
    host: Mapping[str, str | int | None],
) -> str:
    """The results as Markdown."""
    lines = [
        "# Help-center search",
        "",
        sizes,
        "",
        f"## Right article among the top {TOP} passages' articles, test questions",
        "",
        "| fusion | accuracy | off-topic questions given no passage |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {s.accuracy:.1%} ({s.found}/{s.answerable}) | {s.empty}/{s.unanswerable} |"
            for name, s in rows.items()
        ),
        "",
        "The weight and floor are chosen on the dev questions only (most articles found, then most",
        "off-topic questions left without passages); the test questions were never used to choose.",
        *(["", "Missed with the shipped values:", ""] if missed else []),
        *(f"- {q.text} (`{q.article}`)" for q in missed),
        "",
        "## Cost",
        "",
        "| what | CPU |",
        "| --- | --- |",
        *(f"| {what} | {q['p50_ms']:.3f} / {q['p99_ms']:.3f} ms |" for what, q in cost.items()),
        f"| building the index (median of {len(builds)}) | {statistics.median(builds):.1f} ms |",
        f"| reading and splitting the articles | {read_ms:.0f} ms |",
        "",
        "A retrieval embeds the question (WordLlama, its words' tokens remembered), scores every passage",
        "of the locale with BM25 and the vectors, and fuses. Cold caches: after a pass over 32 MB and a",
        "1 ms sleep, as between two messages in the worker. The index is built once per change of the",
        "articles, in the reload's thread, never per message.",
        "",
        f"Machine: {host['cores']} cores, {host['cpu_model']}, Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
