"""The prompt library: the loaded, checked template set, which picks a template for a message and renders it,
with the handoff rules that came with it; and the library in use now (`PromptSource`), which a reload
swaps only when the new set loads cleanly (app/last_good.py).

How templates are loaded and checked is in `loading.py`, how they render in `sandbox.py`, their
file format in `file_format.py`; the handoff rules are `handoff_rules.py`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from app.errors import TemplateError
from app.last_good import FileStates, LastGood, states_of
from app.prompts.file_format import SAMPLE_SUFFIXES, PromptTemplate, TemplateKind, locale_chain, normalise
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.handoff_rules import NO_RULES, HandoffReason, HandoffRules
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.loading import TEMPLATE_GLOB, load_directory
from app.prompts.sandbox import CompiledTemplate, RenderedPrompt, render_chat
from app.prompts.tools_file import FILE_NAME as TOOLS_FILE
from app.prompts.tools_file import NO_TOOLS, ToolSet, ToolSpec
from app.schemas import CustomerMessage, HistoryTurn, Order

# The types of the library's methods are part of its API, wherever they are defined.
__all__ = [
    "HandoffReason",
    "HandoffRules",
    "PromptLibrary",
    "PromptSource",
    "PromptTemplate",
    "RenderedPrompt",
    "file_states",
]


class PromptLibrary:
    """The loaded, checked templates of one directory and its handoff rules; immutable, so reload by
    loading anew."""

    def __init__(
        self,
        entries: Sequence[CompiledTemplate],
        handoff_rules: HandoffRules = NO_RULES,
        tools: ToolSet = NO_TOOLS,
    ) -> None:
        self._entries = {entry.template: entry for entry in entries}
        self.templates: tuple[PromptTemplate, ...] = tuple(entry.template for entry in entries)
        self.handoff_rules = handoff_rules
        self.tools = tools

    @classmethod
    def load(cls, directory: Path) -> PromptLibrary:
        """Load every template and the handoff rules of `directory`; raise the first TemplateError if
        anything is broken."""
        loaded = load_directory(directory)
        if loaded.problems:
            raise loaded.problems[0]
        return cls(loaded.entries, loaded.handoff_rules, loaded.tools)

    @staticmethod
    def check(directory: Path) -> tuple[list[PromptTemplate], list[TemplateError]]:
        """The templates that load and every problem found, each with `file:line`."""
        loaded = load_directory(directory)
        return [entry.template for entry in loaded.entries], loaded.problems

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
        return self.pick("reply", message, customer, signals)

    def pick(
        self,
        kind: TemplateKind,
        message: CustomerMessage,
        customer: Mapping[str, str],
        signals: Mapping[str, Any] | None = None,
    ) -> PromptTemplate:
        """The template of `kind` for this message and customer, chosen as `select` describes; a
        TemplateError when there is none. (`render_fallback` and `render_handoff` pick without signals.)"""
        return _choose([t for t in self.templates if t.kind == kind], message, customer, signals or {})

    def render(
        self,
        template: PromptTemplate,
        *,
        message: CustomerMessage,
        customer: Mapping[str, str],
        history: Sequence[HistoryTurn],
        now: datetime,
        signals: Mapping[str, Any] | None = None,
        orders: Sequence[Order] = (),
        knowledge: Sequence[Mapping[str, str | float]] = (),
    ) -> RenderedPrompt:
        """Render `template` into chat messages, with the customer's recent `orders` (newest first)
        and the help-center's passages for the message (`knowledge`, best first); a TemplateError
        (with file:line) if it fails."""
        entry = self._entries.get(template)
        if entry is None:
            raise TemplateError(f"template {template.name!r} is not part of this library")
        return render_chat(
            entry, message, customer, history, now, signals or {}, orders=orders, knowledge=knowledge
        )

    def tools_for(self, template: PromptTemplate) -> tuple[ToolSpec, ...]:
        """The tools the LLM may call when it answers with `template`: those its front matter names,
        or every tool of tools.yaml when it names none."""
        return self.tools.pick(template.tools)

    def render_fallback(
        self, *, message: CustomerMessage, customer: Mapping[str, str], now: datetime
    ) -> RenderedPrompt:
        """The fallback reply for this message; send `.text` (its one `assistant` message)."""
        template = self.pick("fallback", message, customer)
        return self.render(template, message=message, customer=customer, history=(), now=now)

    def render_handoff(
        self,
        *,
        message: CustomerMessage,
        customer: Mapping[str, str],
        now: datetime,
        reason: HandoffReason,
        signals: Mapping[str, Any] | None = None,
    ) -> RenderedPrompt:
        """The reply telling the customer that a person takes over; send `.text` (its one `assistant`
        message). The template sees `reason` as `{"kind", "detail"}`, and `signals` when given."""
        entry = self._entries[self.pick("handoff", message, customer)]
        return render_chat(entry, message, customer, (), now, signals or {}, reason.as_record())


def file_states(directory: Path) -> FileStates:
    """(name, mtime_ns, size) of every file a load reads: any edit, addition or removal changes it.

    The intents file counts too, as the handoff rules are checked against its intent names, and
    the tools file, as templates name its tools.
    """
    samples = (p for p in (directory / "samples").glob("*") if p.suffix in SAMPLE_SUFFIXES)
    rules = (directory / RULES_FILE, directory / INTENTS_FILE, directory / TOOLS_FILE)
    return states_of([*directory.glob(TEMPLATE_GLOB), *samples, *rules])


class PromptSource(LastGood[PromptLibrary]):
    """Holds the last good PromptLibrary of a directory: templates, samples, handoff rules and intents."""

    def __init__(self, directory: Path, library: PromptLibrary) -> None:
        super().__init__(directory, library, PromptLibrary.load, file_states, "template")

    @classmethod
    def load(cls, directory: Path) -> PromptSource:
        """Load the directory; raises TemplateError when the initial set is broken."""
        return cls(directory, PromptLibrary.load(directory))

    def summary(self) -> dict[str, object]:
        """The versions and the handoff rules a reload brought."""
        return {"versions": self.version_summary(), "handoff_rules": len(self.current.handoff_rules.rules)}

    def version_summary(self) -> dict[str, str]:
        """The version of each template file in use, by file name, for logs."""
        return {template.path.name: template.version for template in self.current.templates}


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
