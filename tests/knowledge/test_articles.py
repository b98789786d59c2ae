"""Reading help-center articles: front matter checked with file:line, bodies split into passages."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.errors import TemplateError
from app.knowledge.articles import PASSAGE_TOKENS, TOKENIZER_MODEL, read_article, read_articles
from app.tokens import count_text

ARTICLE = """---
id: returns
title: Returning an item
locale: de_AT
tags: [returns, refund]
---
Intro under the title.

## After 30 days
Not for a change of mind.

### Faulty items
Covered by the warranty.

```
## not a heading inside a fence
```
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_an_article_is_split_by_heading_with_its_heading_path_and_line(tmp_path: Path) -> None:
    article = read_article(write(tmp_path, "returns.md", ARTICLE))

    assert (article.id, article.title, article.locale, article.tags) == (
        "returns",
        "Returning an item",
        "de-at",
        ("returns", "refund"),
    )
    assert [(p.heading, p.line) for p in article.passages] == [
        ("Returning an item", 7),
        ("Returning an item > After 30 days", 10),
        ("Returning an item > After 30 days > Faulty items", 13),
    ]
    assert "## not a heading inside a fence" in article.passages[-1].text


def test_a_long_section_is_cut_into_bounded_passages(tmp_path: Path) -> None:
    paragraphs = "\n\n".join(f"Paragraph {n} " + "word " * 60 for n in range(12))
    article = read_article(
        write(tmp_path, "long.md", f"---\nid: long\ntitle: Long\n---\n## Part\n{paragraphs}\n")
    )

    assert len(article.passages) > 1
    assert all(count_text(p.text, TOKENIZER_MODEL) <= PASSAGE_TOKENS for p in article.passages)
    assert "".join(p.text for p in article.passages).count("Paragraph") == 12


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("no front matter\n", 1, "must start with a '---' line"),
        ("---\nid: x\ntitle: X\n", 1, "not closed"),
        ("---\nid: x\n---\nText.\n", 1, "`title` is required"),
        ("---\nid: two words\ntitle: X\n---\nText.\n", 2, "`id` may only use letters"),
        ("---\nid: x\ntitle: X\nlocale: english!\n---\nText.\n", 4, "`locale`"),
        ("---\nid: x\ntitle: X\nauthor: me\n---\nText.\n", 4, "`author` is not a known field"),
        ("---\nid: x\ntitle: X\n---\n\n\n", 1, "no text after its front matter"),
    ],
)
def test_a_broken_article_is_reported_at_its_file_and_line(
    tmp_path: Path, text: str, where: int, problem: str
) -> None:
    path = write(tmp_path, "broken.md", text)
    with pytest.raises(TemplateError) as raised:
        read_article(path)
    assert raised.value.location == f"{path}:{where}"
    assert problem in raised.value.reason


def test_a_directory_reports_every_problem_and_keeps_the_good_articles(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "---\nid: same\ntitle: A\n---\nText A.\n")
    second = write(tmp_path, "sub/b.md", "---\ntitle: B\nid: same\n---\nText B.\n")
    broken = write(tmp_path, "c.md", "---\nid: c\n---\nText.\n")

    articles, problems = read_articles(tmp_path)

    assert [a.id for a in articles] == ["same"]
    assert sorted(str(p) for p in problems) == sorted(
        [
            f"{second}:3: id `same` is already used by {tmp_path / 'a.md'}",
            f"{broken}:1: front matter field `title` is required",
        ]
    )


def test_an_absent_directory_is_a_problem(tmp_path: Path) -> None:
    assert [str(p) for p in read_articles(tmp_path / "none")[1]] == [f"{tmp_path / 'none'}: not a directory"]
