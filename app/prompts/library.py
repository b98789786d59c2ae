"""The prompt library: the loaded, checked template set, which picks a template for a message and renders it.

How templates are loaded and checked is in `loading.py`, how they render in `rendering.py`, their
file format in `file_format.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from app.errors import TemplateError
from app.prompts.file_format import PromptTemplate, locale_chain, normalise
from app.prompts.loading import load_directory
from app.prompts.rendering import CompiledTemplate, RenderedPrompt, render_chat
from app.schemas import CustomerMessage, HistoryTurn

# The types of the library's methods are part of its API, wherever they are defined.
__all__ = ["PromptLibrary", "PromptTemplate", "RenderedPrompt"]


class PromptLibrary:
    """The loaded, checked templates of one directory; immutable, so reload by loading anew."""

    def __init__(self, entries: Sequence[CompiledTemplate]) -> None:
        self._entries = {entry.template: entry for entry in entries}
        self.templates: tuple[PromptTemplate, ...] = tuple(entry.template for entry in entries)

    @classmethod
    def load(cls, directory: Path) -> PromptLibrary:
        """Load every template of `directory`; raise the first TemplateError if any is broken."""
        entries, problems = load_directory(directory)
        if problems:
            raise problems[0]
        return cls(entries)

    @staticmethod
    def check(directory: Path) -> tuple[list[PromptTemplate], list[TemplateError]]:
        """The templates that load and every problem found, each with `file:line`."""
        entries, problems = load_directory(directory)
        return [entry.template for entry in entries], problems

    def select(
        self, message: CustomerMessage, customer: Mapping[str, str], signals: Mapping[str, Any] | None = None
    ) -> PromptTemplate:
        """The most specific reply template for this message and customer.

        Templates naming the message's locale are tried first (`de-AT`, then `de`), then
        English ones (`locale: en` or no locale). Among matches the one with most conditions
        wins; its variants are chosen by a hash of the conversation id, so a conversation
        always gets the same variant. `signals` (a reply's `signals` record) adds the facts
        `intent` and `language` for the conditions of that name.
        """
        return _choose([t for t in self.templates if not t.is_fallback], message, customer, signals or {})

    def render(
        self,
        template: PromptTemplate,
        *,
        message: CustomerMessage,
        customer: Mapping[str, str],
        history: Sequence[HistoryTurn],
        now: datetime,
        signals: Mapping[str, Any] | None = None,
    ) -> RenderedPrompt:
        """Render `template` into chat messages; a TemplateError (with file:line) if it fails."""
        entry = self._entries.get(template)
        if entry is None:
            raise TemplateError(f"template {template.name!r} is not part of this library")
        return render_chat(entry, message, customer, history, now, signals or {})

    def render_fallback(
        self, *, message: CustomerMessage, customer: Mapping[str, str], now: datetime
    ) -> RenderedPrompt:
        """The fallback reply for this message; send `.text` (its one `assistant` message)."""
        template = _choose([t for t in self.templates if t.is_fallback], message, customer, {})
        return self.render(template, message=message, customer=customer, history=(), now=now)


def _choose(
    candidates: Sequence[PromptTemplate],
    message: CustomerMessage,
    customer: Mapping[str, str],
    signals: Mapping[str, Any],
) -> PromptTemplate:
    facts = {"channel": normalise(message.channel), "tier": normalise(customer.get("tier", ""))}
    facts |= {name: normalise(str(signals[name])) for name in ("intent", "language") if signals.get(name)}
    for locale in locale_chain(message.locale):
        matching = [
            t
            for t in candidates
            if t.conditions.matches({**facts, "locale": locale})
            and (t.conditions.locale is not None or locale == "en")
        ]
        if matching:
            return _pick_variant(matching, message.conversation_id)
    raise TemplateError("no template matches and there is no catch-all template")


def _pick_variant(matching: Sequence[PromptTemplate], conversation_id: str) -> PromptTemplate:
    # Matches with equal specificity have identical conditions: they are variants of one template.
    best = max(t.conditions.specificity for t in matching)
    group = sorted((t for t in matching if t.conditions.specificity == best), key=lambda t: t.variant or "")
    digest = hashlib.sha256(f"{group[0].name}:{conversation_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(t.weight for t in group)
    for template in group:
        point -= template.weight
        if point < 0:
            return template
    return group[-1]
