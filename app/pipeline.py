"""One message to one reply: reply store → context → prompt → token budget → LLM. No faust here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.errors import LLMUnavailable
from app.llm.client import CallOptions, DeltaSink
from app.observability import metrics
from app.observability.redaction import Redactor
from app.prices import base_model
from app.prompts.library import RenderedPrompt
from app.resources import Resources
from app.schemas import CustomerMessage, HistoryTurn, Reply, Usage, reply_id_for, rfc3339, utc_now
from app.tokens import fits_budget

# An LLM can be talked into repeating key-shaped text; it never leaves in a reply.
KEY_SHAPED = Redactor(())


@dataclass(frozen=True)
class Answer:
    """The reply to a message and how it was made."""

    reply: Reply
    replayed: bool = False
    unavailable_reason: str | None = None


def fit_history(
    render: Callable[[Sequence[HistoryTurn]], RenderedPrompt],
    history: Sequence[HistoryTurn],
    budget_tokens: int,
    model: str,
) -> RenderedPrompt:
    """Render with as much recent history as fits the budget, dropping the oldest turns first."""
    start = 0
    while True:
        prompt = render(history[start:])
        if start >= len(history) or fits_budget(prompt.messages, budget_tokens, model):
            return prompt
        start += 1


async def answer(message: CustomerMessage, resources: Resources, sink: DeltaSink | None = None) -> Answer:
    """Answer one customer message; a message answered before gets its stored reply back.

    Raises LLMRejected or LLMAuthError from the LLM; when the LLM cannot be reached in time
    the answer is the fallback template's text with status `fallback`.
    """
    started = time.monotonic()
    context, llm = resources.context, resources.llm
    known = await context.lookup(message.message_id, message.customer_id, message.conversation_id)
    if known.stored_reply is not None:
        return Answer(known.stored_reply, replayed=True)
    customer, history, now = known.profile, known.history, utc_now()
    prompts = resources.prompts.current
    template = prompts.select(message, customer)
    prompt = fit_history(
        lambda turns: prompts.render(template, message=message, customer=customer, history=turns, now=now),
        history,
        resources.settings.max_prompt_tokens,
        llm.model,
    )
    options = CallOptions(temperature=template.temperature, max_tokens=template.max_tokens)
    try:
        completion = await llm.complete(prompt.messages, options, sink)
    except LLMUnavailable as error:
        fallback = prompts.render_fallback(message=message, customer=customer, now=now)
        reply = _reply(message, fallback, fallback.text, "fallback", llm.model, Usage(), started)
        return Answer(reply, unavailable_reason=str(error))
    usage = priced(resources, completion.model, prompt.ref.name, completion.usage)
    reply = _reply(message, prompt, completion.text, "ok", completion.model, usage, started)
    return Answer(reply)


def priced(resources: Resources, model: str, template: str, usage: Usage) -> Usage:
    """`usage` with its cost, counted in the token and cost metrics by model and template.

    Labels stay bounded: a model the worker was not configured with counts as `other`, and
    templates are the prompt set's own names.
    """
    cost = resources.prices.cost_usd(model, usage)
    configured = (resources.settings.model, *resources.settings.fallback_models)
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


def turns_of(message: CustomerMessage, reply: Reply) -> list[HistoryTurn]:
    """The two history entries one answered message adds: the customer's and ours."""
    at = rfc3339(utc_now())
    return [
        HistoryTurn(
            role="customer",
            text=message.text,
            message_id=message.message_id,
            at=rfc3339(message.sent_at) if message.sent_at else at,
            conversation_id=message.conversation_id,
        ),
        HistoryTurn(
            role="agent",
            text=reply.text,
            message_id=message.message_id,
            at=reply.created_at,
            conversation_id=message.conversation_id,
        ),
    ]


def _reply(
    message: CustomerMessage,
    prompt: RenderedPrompt,
    text: str,
    status: str,
    model: str,
    usage: Usage,
    started: float,
) -> Reply:
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
        }
    )
