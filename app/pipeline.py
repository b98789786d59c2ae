"""One message's fate: reply store → context → signals → prompt (personal data masked) → token budget
→ LLM → answer restored → reply recorded. No faust here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from app.context import Context
from app.errors import EnricherError, ErrorKind, LLMRejected, LLMUnavailable
from app.guard.output import GuardContext
from app.guard.window import GuardWindow
from app.llm.client import CallOptions, DeltaSink
from app.prompts.library import RenderedPrompt
from app.reply_records import KEY_SHAPED, customer_turns, priced, reply_record, turns_of
from app.resources import Resources
from app.restoring_sink import RestoringSink
from app.schemas import CustomerMessage, ErrorInfo, ForHuman, HistoryTurn, Reply, Usage, rfc3339, utc_now
from app.signals.labels import count
from app.signals.masking import Masked, mask, prompt_texts
from app.signals.models import Signals
from app.tokens import fits_budget

log = logging.getLogger(__name__)

# An intent hands a conversation over only when it is a clear match: on the labelled set the
# messages asking for a person scored 0.55-0.83, while "Question 3 from conversation 4" and
# "Hello? Is someone there?" came out as `wants_human` at 0.40.
HANDOFF_INTENT_CONFIDENCE = 0.5

SinkFor = Callable[[CustomerMessage], DeltaSink]
"""Where the reply to a message streams while the LLM writes it."""


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
    covered: bool = False  # answered by the reply a later message of its batch publishes
    for_human: ForHuman | None = None  # a human has the conversation: no reply, this record

    @property
    def label(self) -> str:
        """The outcome as `enricher_messages_total` counts it."""
        if self.for_human is not None:
            return "for_human"
        if self.reply is None:
            return "dead_lettered"
        if self.covered:
            return "coalesced"
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


async def answer(
    resources: Resources, messages: Sequence[CustomerMessage], sink_for: SinkFor | None = None
) -> list[Outcome]:
    """Decide the fate of messages of one conversation, in input order, recording their reply
    and turns; one outcome per message; never raises.

    A message answered before gets its stored reply back; the others are answered together, by
    one reply that lists them in `answers` and streams to `sink_for(the last of them)`. When the
    LLM refuses the input or cannot answer in time, the reply is the fallback template's text
    with status `fallback`, and a dead letter says why; so too when the output guard refuses the
    answer. When anything unforeseen fails, only a dead letter. A reply is published once: by
    the last message that carries it, the earlier ones are `covered`.
    """
    try:
        outcomes = await _answer(messages, resources, sink_for)
    except Exception as error:  # one decision point: anything unforeseen is dead-lettered
        log.exception("answering failed")
        failure = Failure("internal", f"{type(error).__name__}: {error}")
        return [Outcome(None, failure) for _ in messages]
    last_at = {o.reply.reply_id: at for at, o in enumerate(outcomes) if o.reply is not None}
    return [
        replace(o, covered=True) if o.reply is not None and last_at[o.reply.reply_id] != at else o
        for at, o in enumerate(outcomes)
    ]


async def _answer(
    messages: Sequence[CustomerMessage], resources: Resources, sink_for: SinkFor | None
) -> list[Outcome]:
    last = messages[-1]
    ids = [message.message_id for message in messages]
    known = await resources.context.lookup(ids, last.customer_id, last.conversation_id)
    # Stored with its turns when first answered.
    fresh = list({m.message_id: m for m in messages if m.message_id not in known.stored}.values())
    if known.human:
        # A redelivered handoff reply may have been stored before the state was set.
        return [_replayed(m, known) or await _for_human(m, resources) for m in messages]
    answered = await _reply_to(fresh, known, resources, sink_for) if fresh else {}
    outcomes = []
    for message in messages:
        stored = _replayed(message, known)
        if stored is not None:
            if stored.reply is not None and stored.reply.status == "handoff":
                await resources.context.hand_to_human(message.conversation_id)
            outcomes.append(stored)
        else:  # every message that is not stored is answered
            outcomes.append(answered[message.message_id])
    return outcomes


def _replayed(message: CustomerMessage, known: Context) -> Outcome | None:
    """The stored reply to `message`, if it was answered before."""
    stored = known.stored.get(message.message_id)
    if stored is None:
        return None
    # A fallback not marked published may have lost its dead letter in a crash: it goes out again.
    failure = known.failures.get(message.message_id)
    dead_letter = Failure(failure.kind, failure.detail) if failure is not None else None
    return Outcome(stored, dead_letter, replayed=True, published=message.message_id in known.published)


async def _for_human(message: CustomerMessage, resources: Resources) -> Outcome:
    """A message of a conversation a human has: kept in its history, and sent on to the human."""
    at = rfc3339(message.sent_at or utc_now())
    await resources.context.add_turns(message.conversation_id, message.message_id, customer_turns([message]))
    record = ForHuman(
        conversation_id=message.conversation_id, message_id=message.message_id, text=message.text, at=at
    )
    return Outcome(None, for_human=record)


async def _reply_to(
    fresh: Sequence[CustomerMessage], known: Context, resources: Resources, sink_for: SinkFor | None
) -> dict[str, Outcome]:
    """One reply to the messages not answered before, as if they were one message; the outcome of
    each, by message id."""
    started = time.monotonic()
    llm = resources.llm
    message = together(fresh)
    customer, now = known.profile, utc_now()
    signals, masked = await _read(resources, prompt_texts(message, known.history, customer), message.locale)
    found = signals.as_record() if signals is not None else None
    prompts = resources.prompts.current
    reason = prompts.handoff_rules.decide(
        intent=signals.intent
        if signals is not None and signals.intent_confidence >= HANDOFF_INTENT_CONFIDENCE
        else None,
        sentiment=signals.sentiment if signals is not None else None,
        tier=customer.get("tier", ""),
        fallbacks_in_a_row=known.fallbacks,
    )
    if reason is not None:
        handoff = prompts.render_handoff(
            message=message, customer=customer, now=now, reason=reason, signals=found
        )
        reply = reply_record(fresh, handoff, handoff.text, "handoff", llm.model, Usage(), started, found)
        reply = reply.model_copy(update={"handoff": reason.as_record()})
        counting = await resources.context.record(reply, turns_of(fresh, reply))
        await resources.context.hand_to_human(message.conversation_id)
        return {message_id: Outcome(reply) for message_id, reply in counting.items()}
    masked_message, history, profile = masked.prompt_parts(message, known.history, customer)
    asked = _as_asked(masked_message, signals.language if signals is not None else None)
    template = prompts.select(asked, customer, found)
    prompt = fit_history(
        lambda turns: prompts.render(
            template, message=asked, customer=profile, history=turns, now=now, signals=found
        ),
        history,
        resources.settings.max_prompt_tokens,
        llm.model,
    )
    options = CallOptions(temperature=template.temperature, max_tokens=template.max_tokens)
    failure = None
    guarded = GuardContext.for_message(prompt.messages, message, customer, known.history)
    # The stream goes through the guard's window: a chunk holds only text the guard has passed.
    window = GuardWindow(sink_for(message), resources.guard, guarded) if sink_for is not None else None
    restoring = RestoringSink(window, masked) if window is not None else None
    try:
        completion = await llm.complete(prompt.messages, options, restoring)
        if restoring is not None:
            await restoring.flush()
    except (LLMRejected, LLMUnavailable) as error:
        failure = Failure.of(error)
    else:
        configured = (resources.settings.model, *resources.settings.fallback_models)
        usage = priced(resources.prices, configured, completion.model, prompt.ref.name, completion.usage)
        text = masked.restore(completion.text)
        # Checked before KEY_SHAPED redacts: the guard must see a secret to refuse the answer.
        verdict = resources.guard.check(text, guarded)
        if verdict.blocked:
            failure = Failure("guard_blocked", verdict.detail)
        else:
            reply = reply_record(fresh, prompt, text, "ok", completion.model, usage, started, found)
            if window is not None:
                await window.release()
    if failure is not None:
        fallback = prompts.render_fallback(message=message, customer=customer, now=now)
        reply = reply_record(fresh, fallback, fallback.text, "fallback", llm.model, Usage(), started, found)
    # A reply stored by another worker meanwhile counts instead of this one.
    # Kept for the dead letter a redelivery writes again; a provider's error body may quote a key.
    stored_failure = ErrorInfo(kind=failure.kind, detail=KEY_SHAPED(failure.detail)) if failure else None
    counting = await resources.context.record(reply, turns_of(fresh, reply), known.fallbacks, stored_failure)
    return {message_id: Outcome(reply, failure) for message_id, reply in counting.items()}


def together(messages: Sequence[CustomerMessage]) -> CustomerMessage:
    """Messages a customer sent one after another, as the one message the prompt shows: the
    last of them, with all their texts one per line."""
    if len(messages) == 1:
        return messages[0]
    return messages[-1].model_copy(update={"text": "\n".join(m.text for m in messages)})


async def _read(resources: Resources, texts: list[str], locale: str) -> tuple[Signals | None, Masked]:
    """What the embedded models find in the message (`texts[0]`), counted, and the texts as they
    leave for the LLM: personal data as placeholders (promise 7), to be restored in the answer;
    `locale`'s region adds its plain national phone numbers. The masking needs no model: it holds
    with `ENRICHER_SIGNALS=off` too."""
    masking = resources.settings.pii_masking == "on"
    as_written = Masked(tuple(texts), {}, ())
    if resources.signals is None:
        return None, mask(texts, locale) if masking else as_written
    signals, masked = (await resources.signals.get()).read(texts, locale)
    count(signals)
    return signals, masked if masking else as_written


def _as_asked(message: CustomerMessage, language: str | None) -> CustomerMessage:
    """The message as the prompt shows it: when it names no locale, with the language detected
    in it as its locale (for choosing a template of that locale)."""
    if "locale" in message.model_fields_set or language is None:
        return message
    return message.model_copy(update={"locale": language})
