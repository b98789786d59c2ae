"""Trying a draft: each recent message answered by the LLM with the current template and with the
draft, side by side, with the tokens and cost of both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.chat.studio_catalog import render_for
from app.errors import LLMError, TemplateError
from app.llm.client import CallOptions, LLMClient
from app.prices import PriceTable
from app.prompts.library import PromptLibrary, PromptTemplate
from app.schemas import CustomerMessage, rfc3339

Relocate = Callable[[TemplateError], TemplateError]


def _as_it_is(error: TemplateError) -> TemplateError:
    return error


@dataclass(frozen=True)
class Side:
    """One column: a template of a library, and how its errors are worded (a draft's name the
    template directory, not the scratch copy it was loaded from)."""

    library: PromptLibrary
    template: PromptTemplate
    relocate: Relocate = _as_it_is

    async def answer(
        self, llm: LLMClient, prices: PriceTable, message: CustomerMessage, customer: Mapping[str, str]
    ) -> dict[str, Any]:
        """The LLM's reply to the message as this side renders it (no history: the same for both
        sides), or the error that stopped it."""
        try:
            rendered = render_for(self.library, self.template, message, customer, ())
        except TemplateError as error:
            return {"error": str(self.relocate(error))}
        options = CallOptions(temperature=self.template.temperature, max_tokens=self.template.max_tokens)
        try:
            completion = await llm.complete(rendered.messages, options)
        except LLMError as error:
            return {"error": f"the LLM did not answer: {error}"}
        usage = completion.usage
        return {
            "text": completion.text,
            "model": completion.model,
            "version": self.template.version,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_usd": prices.cost_usd(completion.model, usage),
        }


async def compare(
    llm: LLMClient,
    prices: PriceTable,
    sides: tuple[Side, Side],
    messages: Sequence[CustomerMessage],
    profiles: Mapping[str, Mapping[str, str]],
) -> list[dict[str, Any]]:
    """For each message, the current side's and the draft side's answer; all calls at once (the
    client bounds how many are in flight)."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            [
                group.create_task(side.answer(llm, prices, m, profiles.get(m.customer_id or "", {})))
                for side in sides
            ]
            for m in messages
        ]
    return [
        {
            "message_id": m.message_id,
            "conversation_id": m.conversation_id,
            "customer_id": m.customer_id,
            "text": m.text,
            "sent_at": rfc3339(m.sent_at) if m.sent_at else None,
            "current": mine.result(),
            "draft": theirs.result(),
        }
        for m, (mine, theirs) in zip(messages, tasks, strict=True)
    ]
