"""Help-center articles: one Markdown file each with front matter, read, checked and split into passages.

An article is a file `knowledge/<anything>.md` (sub-folders too):

    ---
    id: returns-window          # required, unique in the directory: the reply's `sources` name it
    title: Returning an item    # required
    locale: en                  # optional, default en: the messages of this locale are answered from it
    tags: [returns, refund]     # optional words that help the search find it
    ---
    Text under no heading belongs to the title.

    ## After 30 days
    Each heading starts a passage: its heading path and its text, up to PASSAGE_TOKENS tokens.

Every problem is reported as `file:line`, the way template problems are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.errors import TemplateError
from app.prompts.file_format import normalise, read_text, split_front_matter
from app.tokens import count_text

ARTICLE_GLOB = "**/*.md"
# A passage is one heading's text, cut at paragraphs to at most this many tokens: a few passages
# then fit a prompt, and a long section does not drown the words that matched in it.
PASSAGE_TOKENS = 220
# The bound is counted in the common tokenizer (o200k): passages are cut once, for any model.
TOKENIZER_MODEL = "gpt-4o"
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
LOCALE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")


class ArticleFront(BaseModel):
    """The YAML between the two `---` lines at the top of an article."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    title: Annotated[str, Field(min_length=1)]
    locale: str = "en"
    tags: tuple[Annotated[str, Field(min_length=1)], ...] = ()

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        locale = normalise(value)
        if not LOCALE.fullmatch(locale):
            raise ValueError("must be a language tag such as en, de or pt-BR")
        return locale


@dataclass(frozen=True, slots=True)
class Passage:
    """One searchable piece of an article: the headings above it and its text."""

    article_id: str
    title: str
    locale: str
    tags: tuple[str, ...]
    headings: tuple[str, ...]
    """The article's title, then each heading down to this passage's own."""
    text: str
    line: int
    """The file's line where the passage starts."""

    @property
    def heading(self) -> str:
        """The heading path, `Title > Section > Subsection`."""
        return " > ".join(self.headings)


@dataclass(frozen=True, slots=True)
class Article:
    """A checked article and its passages."""

    id: str
    title: str
    locale: str
    tags: tuple[str, ...]
    path: Path
    passages: tuple[Passage, ...]


def read_article(path: Path) -> Article:
    """One article file, checked and split into passages; a TemplateError with `file:line`."""
    front, body = split_front_matter(path, read_text(path), ArticleFront)
    passages = tuple(_passages(front, body))
    if not passages:
        # Like a missing key, missing text has no line of its own: the opening '---' stands for it.
        raise TemplateError("the article has no text after its front matter", f"{path}:1")
    return Article(front.id, front.title, front.locale, front.tags, path, passages)


def read_articles(directory: Path) -> tuple[list[Article], list[TemplateError]]:
    """Every article of `directory` that reads, and every problem found, each with `file:line`.

    Two articles with one `id` are a problem of the second (in path order); the first is kept.
    """
    if not directory.is_dir():
        return [], [TemplateError("not a directory", str(directory))]
    articles: list[Article] = []
    problems: list[TemplateError] = []
    by_id: dict[str, Article] = {}
    for path in sorted(directory.glob(ARTICLE_GLOB)):
        try:
            article = read_article(path)
        except TemplateError as error:
            problems.append(error)
            continue
        first = by_id.setdefault(article.id, article)
        if first is not article:
            where = f"{path}:{_front_line(path, 'id')}"
            problems.append(TemplateError(f"id `{article.id}` is already used by {first.path}", where))
            continue
        articles.append(article)
    return articles, problems


def _front_line(path: Path, key: str) -> int:
    """The file line of a front matter key (the article read already, so it is there)."""
    lines = read_text(path).split("\n")
    return next((n for n, line in enumerate(lines, 1) if line.startswith(f"{key}:")), 1)


def _passages(front: ArticleFront, body: str) -> Iterator[Passage]:
    """The body's passages, one or more per heading, in order; headings inside code fences are text."""
    headings: list[tuple[int, str]] = []  # (level, text) of the headings above, the title at level 0
    lines: list[str] = []
    start = 1
    fenced = False
    for number, line in enumerate([*body.split("\n"), "# "], 1):
        if FENCE.match(line):
            fenced = not fenced
        found = None if fenced else HEADING.match(line)
        if found is None:
            lines.append(line)
            continue
        path = (front.title, *(text for _, text in headings))
        yield from _bounded(front, path, lines, start)
        level, text = len(found.group(1)), found.group(2)
        headings = [(lvl, txt) for lvl, txt in headings if lvl < level]
        # An H1 repeating the title adds nothing to the path.
        if text and not (level == 1 and text.casefold() == front.title.casefold()):
            headings.append((level, text))
        lines, start = [], number + 1


def _bounded(
    front: ArticleFront, headings: Sequence[str], lines: Sequence[str], start: int
) -> Iterator[Passage]:
    """A section's text as passages of at most PASSAGE_TOKENS tokens, cut between paragraphs (a longer
    paragraph between words)."""
    chunk: list[str] = []
    chunk_line = start
    size = 0
    for line_no, paragraph in _paragraphs(lines, start):
        for piece in _pieces(paragraph):
            tokens = count_text(piece, TOKENIZER_MODEL)
            if chunk and size + tokens > PASSAGE_TOKENS:
                yield _passage(front, headings, chunk, chunk_line)
                chunk, size = [], 0
            if not chunk:
                chunk_line = line_no
            chunk.append(piece)
            size += tokens
    if chunk:
        yield _passage(front, headings, chunk, chunk_line)


def _passage(front: ArticleFront, headings: Sequence[str], chunk: Sequence[str], line: int) -> Passage:
    text = "\n\n".join(chunk)
    return Passage(front.id, front.title, front.locale, front.tags, tuple(headings), text, line)


def _paragraphs(lines: Sequence[str], start: int) -> Iterator[tuple[int, str]]:
    """(first line, text) of each run of non-blank lines."""
    run: list[str] = []
    for number, line in enumerate([*lines, ""], start):
        if line.strip():
            if not run:
                first = number
            run.append(line.rstrip())
        elif run:
            yield first, "\n".join(run)
            run = []


def _pieces(paragraph: str) -> Iterator[str]:
    """The paragraph, or, when it alone is over PASSAGE_TOKENS, its words in runs that are not."""
    if count_text(paragraph, TOKENIZER_MODEL) <= PASSAGE_TOKENS:
        yield paragraph
        return
    run: list[str] = []
    for word in paragraph.split():
        if run and count_text(" ".join([*run, word]), TOKENIZER_MODEL) > PASSAGE_TOKENS:
            yield " ".join(run)
            run = []
        run.append(word)
    if run:
        yield " ".join(run)
