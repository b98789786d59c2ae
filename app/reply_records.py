"""The records a reply is made of: the reply itself, priced and counted, and its history turns."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from app.observability import metrics
from app.observability.redaction import Redactor
from app.prices import PriceTable, base_model
from app.prompts.library import RenderedPrompt
from app.schemas import CustomerMessage, HistoryTurn, Reply, Usage, reply_id_for, rfc3339, utc_now

# An LLM can be talked into repeating key-shaped text; it never leaves in a reply.
KEY_SHAPED = Redactor(())


def priced(prices: PriceTable, configured: Collection[str], model: str, template: str, usage: Usage) -> Usage:
    """`usage` with its cost, counted in the token and cost metrics by model and template.

    Labels stay bounded: a model not in `configured` (the worker's model and its fallbacks) counts
    as `other`, and templates are the prompt set's own names.
    """
    cost = prices.cost_usd(model, usage)
    base = base_model(model)
    label = base if base in configured else "other"
    for kind, tokens in (
        ("prompt", usage.prompt_tokens),
        ("cached", usage.cached_tokens),
        ("completion", usage.completion_tokens),
    ):
        metrics.LLM_TOKENS.labels(label, template, kind).inc(tokens)
    if cost is not None:
        metrics.LLM_COST.labels(label, template).inc(cost)
    return usage.model_copy(update={"cost_usd": cost})


def customer_turns(messages: Sequence[CustomerMessage]) -> list[HistoryTurn]:
    """The history entries of what the customer wrote."""
    now = rfc3339(utc_now())
    return [
        HistoryTurn(
            role="customer",
            text=message.text,
            message_id=message.message_id,
            at=rfc3339(message.sent_at) if message.sent_at else now,
            conversation_id=message.conversation_id,
        )
        for message in messages
    ]


def turns_of(messages: Sequence[CustomerMessage], reply: Reply) -> list[HistoryTurn]:
    """The history entries a reply adds: each message it answers, the customer's, and ours."""
    ours = HistoryTurn(
        role="agent",
        text=reply.text,
        message_id=reply.message_id,
        at=reply.created_at,
        conversation_id=reply.conversation_id,
    )
    return [*customer_turns(messages), ours]


def reply_record(
    messages: Sequence[CustomerMessage],
    prompt: RenderedPrompt,
    text: str,
    status: str,
    model: str,
    usage: Usage,
    started: float,
    signals: dict[str, Any] | None,
) -> Reply:
    """The reply to `messages`, answered together: it is named after the last of them, and
    `started` is when its making began."""
    message = messages[-1]
    return Reply.model_validate(
        {
            "reply_id": reply_id_for(message.message_id),
            "message_id": message.message_id,
            "conversation_id": message.conversation_id,
            "customer_id": message.customer_id,
            "text": KEY_SHAPED(text),
            "status": status,
            "model": model,
            "prompt": prompt.ref,
            "usage": usage,
            "latency_ms": round((time.monotonic() - started) * 1000),
            "created_at": rfc3339(utc_now()),
            "signals": signals,
            "answers": [m.message_id for m in messages],
        }
    )
