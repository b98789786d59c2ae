"""One message's fate (`app.fate`), made in named steps: read (signals, personal data masked) →
decide (the handoff rules) → prompt (template, history within the token budget) → ask (the LLM,
its answer restored and priced) → check (the output guard) → record (reply and turns). Here too
what a reply is made of (the reply itself, priced and counted, and its history turns) and the
streamed answer with the customer's personal data put back, chunk by chunk (promise 7). No faust
here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

from app.context import Context
from app.errors import InvalidStructured, LLMRejected, LLMUnavailable
from app.fate import (
    AlreadyPublished,
    Answered,
    Covered,
    DeadLettered,
    Failure,
    Fallback,
    Fate,
    HandedOver,
    Replayed,
    ToHuman,
)
from app.guard import GuardContext, GuardWindow, OutputGuard
from app.knowledge.index import Hit
from app.llm.client import CallOptions, Completion, DeltaSink
from app.llm.tool_calls import ToolRunner, ToolUse
from app.llm.tool_loop import complete_with_tools
from app.observability import metrics
from app.observability.logs import Redactor
from app.prices import PriceTable, base_model
from app.prompts.handoff_rules import HandoffReason
from app.prompts.library import PromptLibrary, RenderedPrompt
from app.prompts.response_schema import ResponseSchema, map_strings, strings
from app.prompts.tools_file import ToolSpec
from app.resources import Resources
from app.schemas import (
    CustomerMessage,
    ErrorInfo,
    ForHuman,
    HistoryTurn,
    Reply,
    Source,
    ToolCalled,
    Usage,
    reply_id_for,
    rfc3339,
    utc_now,
)
from app.signals.models import Signals, count
from app.signals.pii import Masked, MaskedTools, mask, prompt_texts
from app.tokens import ChatMessage, fits_budget

log = logging.getLogger(__name__)

# An intent hands a conversation over only when it is a clear match: on the labelled set the
# messages asking for a person scored 0.55-0.83, while "Question 3 from conversation 4" and
# "Hello? Is someone there?" came out as `wants_human` at 0.40.
HANDOFF_INTENT_CONFIDENCE = 0.5
# An LLM can be talked into repeating key-shaped text; it never leaves in a reply.
KEY_SHAPED = Redactor(())

SinkFor = Callable[[CustomerMessage], DeltaSink]
"""Where the reply to a message streams while the LLM writes it."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What the read step finds in a message: the embedded models' signals (and their record, for
    the reply and the templates), and the prompt's texts as they leave for the LLM."""

    signals: Signals | None
    found: dict[str, Any] | None
    masked: Masked


@dataclass(frozen=True, slots=True)
class Prompt:
    """What the prompt step makes: the messages for the LLM and the template's call options."""

    rendered: RenderedPrompt
    options: CallOptions
    sources: list[Source]
    """The help-center articles the rendered prompt carries, best first (the reply's `sources`)."""
    response: ResponseSchema | None = None
    """The template's response schema: the answer is a JSON object of it (a structured reply)."""
    tools: tuple[ToolSpec, ...] = ()
    """The tools the template lets the LLM call."""
    knowledge_tokens: int = 0
    """The tokens of the help-center passages it carries (the reply's `usage.knowledge_tokens`)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The LLM's answer with the customer's personal data back in it, priced."""

    text: str
    model: str
    usage: Usage
    tools: tuple[ToolUse, ...]
    """The tool calls made for it, in order."""
    structured: dict[str, Any] | None = None
    """A structured reply's validated object, its personal data back; `text` is its text field."""


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


def fit_prompt(
    render: Callable[[Sequence[HistoryTurn], Sequence[Hit]], RenderedPrompt],
    history: Sequence[HistoryTurn],
    passages: Sequence[Hit],
    budget_tokens: int,
    model: str,
) -> tuple[RenderedPrompt, list[Hit]]:
    """Render with the help-center's `passages` and as much recent history as fits the budget; the
    passages that fit, best first.

    The oldest turns go first, then the lowest-scored passages: the passages were found for this
    very message and are few and short (app/knowledge), while an old turn is the part of the
    prompt least likely to matter to it.
    """
    kept = list(passages)
    while True:
        prompt = fit_history(lambda turns: render(turns, kept), history, budget_tokens, model)
        if not kept or fits_budget(prompt.messages, budget_tokens, model):
            return prompt, kept
        kept.pop()


async def answer(
    resources: Resources, messages: Sequence[CustomerMessage], sink_for: SinkFor | None = None
) -> list[Fate]:
    """The fate of each of `messages` (of one conversation), in input order, with their reply and
    turns recorded; never raises.

    A message answered before gets its stored reply back; the others are answered together, by
    one reply that lists them in `answers` and streams to `sink_for(the last of them)`. When the
    LLM refuses the input or cannot answer in time, the reply is the fallback template's text,
    and a dead letter says why; so too when the output guard refuses the answer. When anything
    unforeseen fails, only a dead letter. A reply is published once: by the last message that
    carries it, the earlier ones are `Covered`.
    """
    try:
        fates = await _answer(messages, resources, sink_for)
    except Exception as error:  # one decision point: anything unforeseen is dead-lettered
        log.exception("answering failed")
        return [DeadLettered(Failure("internal", f"{type(error).__name__}: {error}"))] * len(messages)
    return _published_once(fates)


async def _answer(
    messages: Sequence[CustomerMessage], resources: Resources, sink_for: SinkFor | None
) -> list[Fate]:
    last = messages[-1]
    ids = [message.message_id for message in messages]
    known = await resources.context.lookup(ids, last.customer_id, last.conversation_id)
    if known.human:
        # A redelivered handoff reply may have been stored before the state was set.
        return [_replayed(m, known) or await _for_human(m, resources) for m in messages]
    # Stored with its turns when first answered.
    fresh = list({m.message_id: m for m in messages if m.message_id not in known.stored}.values())
    answered = await _reply_to(fresh, known, resources, sink_for) if fresh else {}
    fates: list[Fate] = []
    for message in messages:
        stored = _replayed(message, known)
        if stored is None:  # every message that is not stored is answered
            fates.append(answered[message.message_id])
            continue
        if stored.reply.status == "handoff":
            await resources.context.hand_to_human(message.conversation_id)
        fates.append(stored)
    return fates


def _replayed(message: CustomerMessage, known: Context) -> Replayed | AlreadyPublished | None:
    """The stored reply to `message`, if it was answered before."""
    stored = known.stored.get(message.message_id)
    if stored is None:
        return None
    if message.message_id in known.published:
        return AlreadyPublished(stored)
    # A fallback not marked published may have lost its dead letter in a crash: it goes out again.
    failure = known.failures.get(message.message_id)
    return Replayed(stored, Failure(failure.kind, failure.detail) if failure is not None else None)


async def _for_human(message: CustomerMessage, resources: Resources) -> ToHuman:
    """A message of a conversation a human has: kept in its history, and sent on to the human."""
    at = rfc3339(message.sent_at or utc_now())
    await resources.context.add_turns(message.conversation_id, message.message_id, customer_turns([message]))
    return ToHuman(
        ForHuman(
            conversation_id=message.conversation_id, message_id=message.message_id, text=message.text, at=at
        )
    )


def _published_once(fates: list[Fate]) -> list[Fate]:
    """A reply is published by the last message that carries it: those before it are `Covered`,
    each keeping its dead letter (every message of a fallback can be re-driven)."""
    last_at = {
        fate.reply.reply_id: at
        for at, fate in enumerate(fates)
        if not isinstance(fate, ToHuman | DeadLettered)
    }
    for at, fate in enumerate(fates):
        if isinstance(fate, ToHuman | DeadLettered) or last_at[fate.reply.reply_id] == at:
            continue
        fates[at] = Covered(fate.reply, fate.dead_letter if isinstance(fate, Fallback | Replayed) else None)
    return fates


async def _reply_to(
    fresh: Sequence[CustomerMessage], known: Context, resources: Resources, sink_for: SinkFor | None
) -> dict[str, Fate]:
    """One reply to the messages not answered before, as if they were one message; the fate of
    each, by message id. Its steps: read → decide → prompt → ask → check → decide on the answer →
    record; a handoff (by the rules, before the answer or on it) is the handoff reply instead."""
    started, now = time.monotonic(), utc_now()
    message, prompts = together(fresh), resources.prompts.current
    read = await _read(resources, message, known)
    reason = _decide(prompts, message.text, read.signals, known)
    if reason is not None:
        return await _hand_over(resources, prompts, fresh, known, read, reason, started=started, now=now)
    prompt = _prompt(resources, prompts, message, known, read, now)
    told: list[str] = []  # what the tools return for this reply: the answer may repeat it
    guarded = GuardContext.for_message(prompt.rendered.messages, message, known.profile, known.history, told)
    # The stream goes through the guard's window: a chunk holds only text the guard has passed.
    stream = sink_for(message) if sink_for is not None else None
    window = GuardWindow(stream, resources.guard, guarded) if stream is not None else None
    tools = _tools_for(resources, message, prompt, read.masked, told)
    checked = _check(resources.guard, await _ask(resources, prompt, read.masked, window, tools), guarded)
    if isinstance(checked, Failure):
        fallback = prompts.render_fallback(message=message, customer=known.profile, now=now)
        reply = reply_record(
            fresh, fallback, fallback.text, "fallback", resources.llm.model, Usage(), started, read.found
        )
        return await _record(resources, fresh, reply, known.fallbacks, checked)
    reason = _decide_on_answer(prompts, message.text, read.signals, known, checked)
    if reason is not None:  # nothing of it streamed: a structured answer streams only below
        return await _hand_over(
            resources, prompts, fresh, known, read, reason, started=started, now=now, answered=checked
        )
    reply = reply_record(
        fresh, prompt.rendered, checked.text, "ok", checked.model, checked.usage, started, read.found
    ).model_copy(update={"tools": [ToolCalled(name=t.name, ok=t.ok, ms=t.ms) for t in checked.tools]})
    reply = reply.model_copy(update={"sources": prompt.sources, "structured": checked.structured})
    if checked.structured is not None and stream is not None:
        await stream.send(checked.text)  # nothing of its JSON streamed: its text goes out whole, now
    elif window is not None:
        await window.release()
    return await _record(resources, fresh, reply, known.fallbacks)


def together(messages: Sequence[CustomerMessage]) -> CustomerMessage:
    """Messages a customer sent one after another, as the one message the prompt shows: the
    last of them, with all their texts one per line."""
    if len(messages) == 1:
        return messages[0]
    return messages[-1].model_copy(update={"text": "\n".join(m.text for m in messages)})


async def _read(resources: Resources, message: CustomerMessage, known: Context) -> Reading:
    """What the embedded models find in the message, counted, and the prompt's texts as they
    leave for the LLM: personal data as placeholders (promise 7), to be restored in the answer;
    the message's locale's region adds its plain national phone numbers. The masking needs no
    model: it holds with `ENRICHER_SIGNALS=off` too."""
    texts = prompt_texts(message, known.history, known.profile)
    masking = resources.settings.pii_masking == "on"
    as_written = Masked(tuple(texts), {}, ())
    if resources.signals is None:
        return Reading(None, None, mask(texts, message.locale) if masking else as_written)
    signals, masked = (await resources.signals.get()).read(texts, message.locale)
    count(signals)
    return Reading(signals, signals.as_record(), masked if masking else as_written)


def _decide(
    prompts: PromptLibrary,
    text: str,
    signals: Signals | None,
    known: Context,
    *,
    needs_human: bool = False,
) -> HandoffReason | None:
    """Why the conversation goes to a human now, by the support team's handoff rules (on the
    customer's `text` as written: the phrases leave its noise out themselves), or None."""
    return prompts.handoff_rules.decide(
        text=text,
        intent=signals.intent
        if signals is not None and signals.intent_confidence >= HANDOFF_INTENT_CONFIDENCE
        else None,
        sentiment=signals.sentiment if signals is not None else None,
        tier=known.profile.get("tier", ""),
        fallbacks_in_a_row=known.fallbacks,
        needs_human=needs_human,
    )


def _decide_on_answer(
    prompts: PromptLibrary, text: str, signals: Signals | None, known: Context, answered: Answer
) -> HandoffReason | None:
    """Why the conversation goes to a human after all, now that the AI's structured answer says
    `needs_human: true`, by the same rules (the first that applies, tiers heeded); None when the
    answer does not say so, or no rule on `needs_human` applies. The other conditions held no
    rule before the answer, so only a rule's `needs_human` can make one apply now."""
    if answered.structured is None or answered.structured.get("needs_human") is not True:
        return None
    return _decide(prompts, text, signals, known, needs_human=True)


async def _hand_over(
    resources: Resources,
    prompts: PromptLibrary,
    fresh: Sequence[CustomerMessage],
    known: Context,
    read: Reading,
    reason: HandoffReason,
    *,
    started: float,
    now: datetime,
    answered: Answer | None = None,
) -> dict[str, Fate]:
    """The handoff reply to `fresh` (the handoff template's text, nothing of the LLM's) recorded
    with its `reason`, and the conversation given to a human. Decided on the LLM's answer
    (`answered`), the reply keeps that answer's model and usage: its tokens were spent."""
    message = together(fresh)
    handoff = prompts.render_handoff(
        message=message, customer=known.profile, now=now, reason=reason, signals=read.found
    )
    model, usage = (answered.model, answered.usage) if answered else (resources.llm.model, Usage())
    reply = reply_record(fresh, handoff, handoff.text, "handoff", model, usage, started, read.found)
    fates = await _record(resources, fresh, reply.model_copy(update={"handoff": reason.as_record()}))
    await resources.context.hand_to_human(message.conversation_id)
    return fates


def _prompt(
    resources: Resources,
    prompts: PromptLibrary,
    message: CustomerMessage,
    known: Context,
    read: Reading,
    now: datetime,
) -> Prompt:
    """The template the message's conditions choose, rendered with the help-center's passages for
    the message and as much recent history as the token budget holds; message, history and profile
    with their personal data masked (the search, too, reads the masked text)."""
    masked_message, history, profile = read.masked.prompt_parts(message, known.history, known.profile)
    asked = _as_asked(masked_message, read.signals.language if read.signals is not None else None)
    template = prompts.select(asked, known.profile, read.found)
    passages = resources.knowledge.passages_for(asked, history)
    rendered, carried = fit_prompt(
        lambda turns, hits: prompts.render(
            template,
            message=asked,
            customer=profile,
            history=turns,
            now=now,
            signals=read.found,
            orders=known.orders,
            knowledge=[hit.as_record() for hit in hits],
        ),
        history,
        passages,
        resources.settings.max_prompt_tokens,
        resources.llm.model,
    )
    options = CallOptions(
        temperature=template.temperature,
        max_tokens=template.max_tokens,
        response_format=template.response_format,
    )
    knowledge_tokens = sum(hit.tokens(resources.llm.model) for hit in carried)
    metrics.KNOWLEDGE_TOKENS.observe(knowledge_tokens)
    return Prompt(
        rendered,
        options,
        sources(carried),
        template.response,
        prompts.tools_for(template),
        knowledge_tokens,
    )


def sources(hits: Sequence[Hit]) -> list[Source]:
    """The reply's `sources`: each article of `hits` once, with its best passage's score, best first."""
    best: dict[str, Source] = {}
    for hit in hits:  # best first, so an article's first hit is its best
        best.setdefault(
            hit.passage.article_id,
            Source(id=hit.passage.article_id, title=hit.passage.title, score=round(hit.score, 3)),
        )
    return list(best.values())


def _tools_for(
    resources: Resources, message: CustomerMessage, prompt: Prompt, masked: Masked, told: list[str]
) -> ToolRunner | None:
    """The tools the LLM may call for this reply, answering for its customer only, each result added
    to `told` as returned; their results masked like the customer's text (promise 7) for the LLM,
    unless the masking is off."""
    if not prompt.tools:
        return None
    tools = resources.tools.for_customer(message.customer_id, prompt.tools, told)
    return MaskedTools(tools, masked, message.locale) if resources.settings.pii_masking == "on" else tools


async def _ask(
    resources: Resources, prompt: Prompt, masked: Masked, stream: DeltaSink | None, tools: ToolRunner | None
) -> Answer | Failure:
    """The LLM's answer, having called `tools` as it chose, streamed to `stream` with the personal
    data back in it, priced; or why there is none (the LLM refused the input, or the deadline passed).
    A structured reply streams nothing here (`_ask_structured`)."""
    if prompt.response is not None:
        return await _ask_structured(resources, prompt, masked, tools, prompt.response)
    restoring = RestoringSink(stream, masked) if stream is not None else None
    try:
        completion = await complete_with_tools(
            resources.llm,
            prompt.rendered.messages,
            prompt.options,
            tools,
            resources.settings.tool_max_steps,
            restoring,
        )
        if restoring is not None:
            await restoring.flush()
    except (LLMRejected, LLMUnavailable) as error:
        return Failure.of(error)
    usage = _priced(resources, prompt, completion.model, completion.usage)
    return Answer(masked.restore(completion.text), completion.model, usage, completion.tools)


async def _ask_structured(
    resources: Resources, prompt: Prompt, masked: Masked, tools: ToolRunner | None, schema: ResponseSchema
) -> Answer | Failure:
    """The LLM's JSON answer read against the template's response schema, with the personal data
    back in its strings, priced; when it does not match, asked once more with what is wrong (one
    more call, without tools: the answer needs only reshaping); else why there is none.

    The answer is read masked, so the repair request quotes no personal data back to the LLM.
    """
    asked, steps = prompt.rendered.messages, resources.settings.tool_max_steps
    completions: list[Completion] = []
    try:
        completions.append(await complete_with_tools(resources.llm, asked, prompt.options, tools, steps))
        try:
            value = schema.read(completions[0].text)
        except InvalidStructured as error:
            repair: list[ChatMessage] = [
                *asked,
                {"role": "assistant", "content": completions[0].text},
                {"role": "user", "content": schema.repair_request(error)},
            ]
            completions.append(await resources.llm.complete(repair, prompt.options))
            value = schema.read(completions[-1].text)
    except (LLMRejected, LLMUnavailable, InvalidStructured) as error:
        if completions:  # their tokens were spent all the same
            _priced(resources, prompt, completions[-1].model, sum((c.usage for c in completions), Usage()))
        return Failure.of(error)
    answered_by = completions[-1].model
    usage = _priced(resources, prompt, answered_by, sum((c.usage for c in completions), Usage()))
    structured = map_strings(value, masked.restore)
    return Answer(structured[schema.text_field], answered_by, usage, completions[0].tools, structured)


def _priced(resources: Resources, prompt: Prompt, model: str, usage: Usage) -> Usage:
    """`usage` priced, and counted by model and template, with the tokens of the prompt's passages."""
    configured = (resources.settings.model, *resources.settings.fallback_models)
    counted = priced(resources.prices, configured, model, prompt.rendered.ref.name, usage)
    return counted.model_copy(update={"knowledge_tokens": prompt.knowledge_tokens})


def _check(guard: OutputGuard, answered: Answer | Failure, guarded: GuardContext) -> Answer | Failure:
    """The answer, if the output guard lets it out; else why not."""
    if isinstance(answered, Failure):
        return answered
    # Checked before KEY_SHAPED redacts: the guard must see a secret to refuse the answer. Every
    # string of a structured reply goes out in it, not only its text.
    said = answered.text if answered.structured is None else "\n".join(strings(answered.structured))
    verdict = guard.check(said, guarded)
    return Failure("guard_blocked", verdict.detail) if verdict.blocked else answered


async def _record(
    resources: Resources,
    fresh: Sequence[CustomerMessage],
    reply: Reply,
    fallbacks_before: int = 0,
    failure: Failure | None = None,
) -> dict[str, Fate]:
    """Store the reply (and a fallback's failure) for each message it answers, and their turns;
    the fate of each message, by the reply that counts for it: this one, or one another worker
    stored meanwhile."""
    # Kept for the dead letter a redelivery writes again; a provider's error body may quote a key.
    stored_failure = ErrorInfo(kind=failure.kind, detail=KEY_SHAPED(failure.detail)) if failure else None
    counting = await resources.context.record(reply, turns_of(fresh, reply), fallbacks_before, stored_failure)
    return {message_id: _made(counted, failure) for message_id, counted in counting.items()}


def _made(reply: Reply, failure: Failure | None) -> Answered | Fallback | HandedOver:
    """The fate of a message answered now, by the status of the reply that counts for it."""
    match reply.status:
        case "ok":
            return Answered(reply)
        case "fallback":
            return Fallback(reply, failure)
        case "handoff":
            return HandedOver(reply)
        case _:
            assert_never(reply.status)


def _as_asked(message: CustomerMessage, language: str | None) -> CustomerMessage:
    """The message as the prompt shows it: when it names no locale, with the language detected
    in it as its locale (for choosing a template of that locale)."""
    if "locale" in message.model_fields_set or language is None:
        return message
    return message.model_copy(update={"locale": language})


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
