"""`enricher knowledge check|search`: check the help-center's articles, see what a question finds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.errors import TemplateError, fail
from app.knowledge.articles import read_articles
from app.knowledge.index import KnowledgeSource

knowledge_cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Check the help-center and try its search."
)

KNOWLEDGE_DIR = Path("knowledge")


@knowledge_cli.command()
def check(
    directory: Annotated[
        Path, typer.Argument(envvar="ENRICHER_KNOWLEDGE_DIR", help="The help-center directory.")
    ] = KNOWLEDGE_DIR,
) -> None:
    """Read every article, print its id, locale, title and passages, and report each problem as
    file:line. Exits 1 when any article is broken."""
    articles, problems = read_articles(directory)
    for article in articles:
        passages = len(article.passages)
        print(f"{article.path}: {article.id} [{article.locale}] {article.title!r}, {passages} passages")
    for problem in problems:
        print(problem)
    verdict = f"{len(problems)} problem(s)" if problems else "no problems"
    print(f"{len(articles)} articles, {verdict}")
    raise typer.Exit(1 if problems else 0)


@knowledge_cli.command()
def search(
    question: Annotated[str, typer.Argument(help="What the customer writes.")],
    locale: Annotated[str, typer.Option(help="The message's locale: its articles answer it.")] = "en",
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="How many passages to show.")] = 3,
    directory: Annotated[
        Path, typer.Option("--dir", envvar="ENRICHER_KNOWLEDGE_DIR", help="The help-center directory.")
    ] = KNOWLEDGE_DIR,
) -> None:
    """Print the passages the worker would give a prompt for QUESTION: article id, title, score, text."""
    try:
        index = KnowledgeSource.load(directory).current
    except TemplateError as error:
        fail(f"{error}\n(run `enricher knowledge check {directory}` for every problem)")
    hits = index.search(question, locale, top)
    for hit in hits:
        print(f"{hit.score:.3f}  {hit.passage.article_id}  {hit.passage.title}")
        print(f"       {hit.passage.heading} ({hit.passage.locale}, line {hit.passage.line})")
        for line in hit.passage.text.splitlines():
            print(f"       {line}")
    if not hits:
        print("no passage scores high enough: the prompt carries none")
