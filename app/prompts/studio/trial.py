"""Trying a draft: each recent message answered by the LLM with the current template and with the
draft, side by side, with the tokens and cost of both; the studio's LLM calls within a budget of
their own."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter

from app.errors import LLMError
from app.llm.client import CallOptions, LLMClient
from app.prices import PriceTable
from app.prompts.library import PromptLibrary, PromptTemplate
from app.prompts.studio.catalog import Passages, prompts_for
from app.prompts.studio.sandbox import DraftRender
from app.schemas import CustomerMessage, rfc3339
from app.signals.pii import mask
from app.tokens import ChatMessage

STUDIO_MAX_TOKENS = 1024  # a draft's answers, unless the current file allows more
HOUR_S = 3600.0


@dataclass(frozen=True)
class Side:
    """One column: a template's version and model settings, and each message's prompt, or the
    error that stopped it rendering."""

    version: str
    options: CallOptions
    prompts: Sequence[Sequence[ChatMessage] | str]

    @classmethod
    def current(
        cls,
        library: PromptLibrary,
        template: PromptTemplate,
        messages: Sequence[CustomerMessage],
        customers: Sequence[Mapping[str, str]],
        knowledge: Sequence[Passages],
    ) -> Side:
        """The current file, rendered here for each message with its passages (no history: the same
        for both sides)."""
        prompts = prompts_for(library, template, messages, customers, knowledge)
        options = CallOptions(
            temperature=template.temperature,
            max_tokens=template.max_tokens,
            response_format=template.response_format,
        )
        return cls(template.version, options, prompts)

    @classmethod
    def draft(cls, render: DraftRender, current: PromptTemplate) -> Side:
        """The draft as the child process rendered it; its `max_tokens` at most STUDIO_MAX_TOKENS
        or the current file's, whichever is more."""
        cap = max(STUDIO_MAX_TOKENS, current.max_tokens or 0)
        options = CallOptions(temperature=render.temperature, max_tokens=min(render.max_tokens or cap, cap))
        return cls(render.version, options, render.prompts)

    async def answer(
        self, llm: LLMClient, prices: PriceTable, prompt: Sequence[ChatMessage] | str
    ) -> dict[str, Any]:
        """The LLM's reply to one message's prompt, or the error that stopped it."""
        if isinstance(prompt, str):
            return {"error": prompt}
        try:
            completion = await llm.complete(prompt, self.options)
        except LLMError as error:
            return {"error": f"the LLM did not answer: {error}"}
        usage = completion.usage
        return {
            "text": completion.text,
            "model": completion.model,
            "version": self.version,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_usd": prices.cost_usd(completion.model, usage),
        }


class CallBudget:
    """The studio's LLM calls: up to `per_hour` an hour (ENRICHER_STUDIO_MAX_CALLS_PER_HOUR), a
    burst of that many at most, then as the hour frees them."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._limiter = AsyncLimiter(per_hour, HOUR_S)

    async def take(self, calls: int) -> bool:
        """Count `calls` if the budget has them now (nothing is counted otherwise)."""
        if not self._limiter.has_capacity(calls):
            return False
        await self._limiter.acquire(calls)  # has the capacity: returns at once
        return True

    def refusal(self, calls: int) -> str:
        """Why `calls` more are refused, and about when they fit."""
        minutes = math.ceil(min(calls, self.per_hour) * HOUR_S / self.per_hour / 60)
        return (
            f"the studio's LLM budget ({self.per_hour} calls an hour, ENRICHER_STUDIO_MAX_CALLS_PER_HOUR) "
            f"has not {calls} calls left: try fewer messages, or again in up to {minutes} min"
        )


async def compare(
    llm: LLMClient, prices: PriceTable, sides: tuple[Side, Side], messages: Sequence[CustomerMessage]
) -> list[dict[str, Any]]:
    """For each message, the current side's and the draft side's answer; all calls at once (the
    client bounds how many are in flight, and its RPM and TPM caps hold). The message is shown
    with its personal data masked, as the LLM gets it."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            [group.create_task(side.answer(llm, prices, side.prompts[i])) for side in sides]
            for i in range(len(messages))
        ]
    return [
        {
            "message_id": m.message_id,
            "conversation_id": m.conversation_id,
            "customer_id": m.customer_id,
            "text": mask([m.text], m.locale).texts[0],
            "sent_at": rfc3339(m.sent_at) if m.sent_at else None,
            "current": mine.result(),
            "draft": theirs.result(),
        }
        for m, (mine, theirs) in zip(messages, tasks, strict=True)
    ]
