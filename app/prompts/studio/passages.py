"""The help-center passages the worker would give a message, for the studio: found as the worker
finds them (the masked message and history, the message's locale), on an index of the gateway's
own that is built in the background while it starts and reloaded on each edit of an article."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.errors import TemplateError
from app.knowledge.index import Hit
from app.knowledge.source import BackgroundKnowledge
from app.schemas import CustomerMessage, HistoryTurn
from app.signals.models import Embedder, in_background
from app.signals.pii import mask, prompt_texts

log = logging.getLogger(__name__)


class StudioKnowledge:
    """The help-center of ENRICHER_KNOWLEDGE_DIR as the studio shows it; `start` and `stop` belong to
    the gateway's lifespan. A broken help-center leaves the studio without passages, not down."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._knowledge: BackgroundKnowledge | None = None
        self._watching: asyncio.Task[None] | None = None
        self._problem = "the help-center is not loaded"

    def start(self) -> None:
        """Check the articles, and index them in the background (WordLlama loads in a thread)."""
        try:
            self._knowledge = BackgroundKnowledge(self._directory, in_background(Embedder, "embedder"))
        except TemplateError as error:
            self._problem = f"the help-center does not load: {error}"
            log.error("the studio shows no help-center passages", extra={"error": str(error)})
            return
        self._watching = asyncio.create_task(self._knowledge.watch())

    async def stop(self) -> None:
        """Stop following the articles' edits."""
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    def problem(self) -> str | None:
        """Why no passages can be found now (indexing, or a broken help-center); None once they can."""
        return self._problem if self._knowledge is None else self._knowledge.problem()

    def passages_for(
        self, message: CustomerMessage, customer: Mapping[str, str], history: Sequence[HistoryTurn]
    ) -> list[Hit]:
        """The passages the worker would give `message` from `customer` after `history`, best first
        (none while the index is being built)."""
        if self._knowledge is None:
            return []
        texts = prompt_texts(message, history, customer)
        asked, turns, _profile = mask(texts, message.locale).prompt_parts(message, history, customer)
        return self._knowledge.passages_for(asked, turns)


def passages_json(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    """What the studio shows of each passage: its article's id and title, its heading path, and its
    score."""
    return [
        {
            "id": hit.passage.article_id,
            "title": hit.passage.title,
            "heading": hit.passage.heading,
            "score": round(hit.score, 3),
        }
        for hit in hits
    ]
