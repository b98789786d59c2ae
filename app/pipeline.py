"""One message's fate: reply store → context → signals → prompt (personal data masked) → token budget
→ LLM → answer restored → reply recorded. No faust here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.errors import EnricherError, ErrorKind, LLMRejected, LLMUnavailable
from app.guard.output import GuardContext
from app.llm.client import CallOptions, DeltaSink
from app.observability import metrics
from app.observability.redaction import Redactor
from app.prices import base_model
from app.prompts.library import RenderedPrompt
from app.resources import Resources
from app.schemas import CustomerMessage, HistoryTurn, Reply, Usage, reply_id_for, rfc3339, utc_now
from app.signals.labels import signal_labels
from app.signals.masking import Masked
from app.signals.models import Signals
from app.tokens import fits_budget

log = logging.getLogger(__name__)

# An LLM can be talked into repeating key-shaped text; it never leaves in a reply.
KEY_SHAPED = Redactor(())


@dataclass(frozen=True)
class Failure:
    """Why a message goes to the DLQ: the dead letter's kind and detail."""

    kind: ErrorKind
    detail: str

    @classmethod
    def of(cls, error: EnricherError) -> Failure:
        """The dead letter an error of the project's tree calls for."""
        return cls(error.kind, str(error))


@dataclass(frozen=True)
class Outcome:
    """What becomes of one message: a reply to publish, a dead letter, or both (a fallback reply)."""

    reply: Reply | None
    dead_letter: Failure | None = None
    replayed: bool = False
    published: bool = False  # a replayed reply the broker took before: nothing to publish again

    @property
    def label(self) -> str:
        """The outcome as `enricher_messages_total` counts it."""
        if self.reply is None:
            return "dead_lettered"
        if self.published:
            return "already_published"
        return "replayed" if self.replayed else self.reply.status


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


async def answer(resources: Resources, message: CustomerMessage, sink: DeltaSink | None = None) -> Outcome:
    """Decide the fate of one customer message, recording its reply and turns; never raises.

    A message answered before gets its stored reply back. When the LLM refuses the input or
    cannot answer in time, the reply is the fallback template's text with status `fallback`,
    and a dead letter says why; so too when the output guard refuses the answer. When anything
    unforeseen fails, only a dead letter.
    """
    try:
        return await _answer(message, resources, sink)
    except Exception as error:  # one decision point: anything unforeseen is dead-lettered
        log.exception("answering failed")
        return Outcome(None, Failure("internal", f"{type(error).__name__}: {error}"))


async def _answer(message: CustomerMessage, resources: Resources, sink: DeltaSink | None) -> Outcome:
    started = time.monotonic()
    context, llm = resources.context, resources.llm
    known = await context.lookup(message.message_id, message.customer_id, message.conversation_id)
    if known.stored_reply is not None:  # stored with its turns when first answered
        return Outcome(known.stored_reply, replayed=True, published=known.published)
    customer, now = known.profile, utc_now()
    signals, masked = await _read(resources, [message.text, *(turn.text for turn in known.history)])
    found = signals.as_record() if signals is not None else None
    masked_message, history = masked.onto(message, known.history)
    asked = _as_asked(message, masked_message.text, signals.language if signals is not None else None)
    prompts = resources.prompts.current
    template = prompts.select(asked, customer, found)
    prompt = fit_history(
        lambda turns: prompts.render(
            template, message=asked, customer=customer, history=turns, now=now, signals=found
        ),
        history,
        resources.settings.max_prompt_tokens,
        llm.model,
    )
    options = CallOptions(temperature=template.temperature, max_tokens=template.max_tokens)
    failure = None
    restoring = RestoringSink(sink, masked) if sink is not None else None
    try:
        completion = await llm.complete(prompt.messages, options, restoring)
        if restoring is not None:
            await restoring.flush()
    except (LLMRejected, LLMUnavailable) as error:
        failure = Failure.of(error)
    else:
        usage = priced(resources, completion.model, prompt.ref.name, completion.usage)
        text = masked.restore(completion.text)
        # Checked before KEY_SHAPED redacts: the guard must see a secret to refuse the answer.
        guarded = GuardContext.for_message(prompt.messages, message, customer, known.history)
        verdict = resources.guard.check(text, guarded)
        if verdict.blocked:
            failure = Failure("guard_blocked", verdict.detail)
        else:
            reply = _reply(message, prompt, text, "ok", completion.model, usage, started)
    if failure is not None:
        fallback = prompts.render_fallback(message=message, customer=customer, now=now)
        reply = _reply(message, fallback, fallback.text, "fallback", llm.model, Usage(), started)
    reply = reply.model_copy(update={"signals": found})
    # A reply stored by another worker meanwhile counts instead of this one.
    reply = await context.record(reply, _turns_of(message, reply))
    return Outcome(reply, failure)


async def _read(resources: Resources, texts: list[str]) -> tuple[Signals | None, Masked]:
    """What the embedded models find in the message (`texts[0]`), counted, and the texts as they
    leave for the LLM: personal data as placeholders (promise 7), to be restored in the answer."""
    as_written = Masked(tuple(texts), {}, ())
    if resources.signals is None:
        return None, as_written
    models = await resources.signals.get()
    signals = models.detect(texts[0])
    for signal, value in signal_labels(signals):
        metrics.SIGNALS.labels(signal, value).inc()
    return signals, models.mask(texts) if resources.settings.pii_masking == "on" else as_written


def _as_asked(message: CustomerMessage, text: str, language: str | None) -> CustomerMessage:
    """The message as the prompt shows it: its text masked and, when it names no locale, the
    language detected in it as its locale (for choosing a template of that locale)."""
    update: dict[str, str] = {"text": text}
    if "locale" not in message.model_fields_set and language is not None:
        update["locale"] = language
    return message.model_copy(update=update)


class RestoringSink:
    """A DeltaSink that puts the personal data back into the streamed answer before it is sent."""

    def __init__(self, sink: DeltaSink, masked: Masked) -> None:
        self._sink, self._masked = sink, masked
        self._restorer = masked.restorer()

    async def send(self, delta: str) -> None:
        """Send what can be restored now; a placeholder cut between two deltas waits for the next."""
        restored = self._restorer.feed(delta)
        if restored:
            await self._sink.send(restored)

    def restart(self) -> None:
        """The attempt failed: start over, forgetting what was held back."""
        self._restorer = self._masked.restorer()
        self._sink.restart()

    async def flush(self) -> None:
        """Send what is still held back, once the answer is complete."""
        rest = self._restorer.flush()
        if rest:
            await self._sink.send(rest)


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


def _turns_of(message: CustomerMessage, reply: Reply) -> list[HistoryTurn]:
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
