"""The pipeline without a broker: trimming to the token budget; answer() on real Redis and the mock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.asyncio import BlockingConnectionPool, Connection, Redis

from app.context import ContextStore
from app.fate import AlreadyPublished, Answered, Covered, DeadLettered, Failure, Fallback, Fate, Replayed
from app.pipeline import RestoringSink, answer, fit_history
from app.prompts.library import PromptLibrary, RenderedPrompt
from app.redis_keys import published_key
from app.resources import Resources
from app.schemas import CustomerMessage, HistoryTurn, Reply
from app.settings import Settings
from app.signals.pii import mask
from app.tokens import count_chat
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.sinks import Collected
from tests.helpers.template_cases import GOOD_USER, write
from tests.helpers.workers import PROMPTS

MODEL = "gpt-4o-mini"


def history_of(turns: int, words: int) -> list[HistoryTurn]:
    return [
        HistoryTurn(
            role="customer" if n % 2 == 0 else "agent",
            text=f"turn {n} " + "lorem ipsum " * words,
            message_id=f"m{n // 2}",
            at="2026-11-25T04:00:00.000Z",
        )
        for n in range(turns)
    ]


def message(text: str = "Where is my order?", **fields: str) -> CustomerMessage:
    return CustomerMessage(message_id="m-new", conversation_id="c-1", text=text, **fields)


def test_fit_history_drops_oldest_turns_first() -> None:
    library = PromptLibrary.load(PROMPTS)
    request = message()
    template = library.select(request, {})

    def render(turns: Sequence[HistoryTurn]) -> RenderedPrompt:
        return library.render(template, message=request, customer={}, history=turns, now=datetime.now(UTC))

    history = history_of(10, words=50)
    budget = count_chat(render(history).messages, MODEL) - 150
    prompt = fit_history(render, history, budget, MODEL)
    kept = [m["content"] for m in prompt.messages[1:-1]]
    assert count_chat(prompt.messages, MODEL) <= budget
    assert 0 < len(kept) < 10
    assert kept[-1].startswith("turn 9 ")
    assert all(text.startswith(f"turn {10 - len(kept) + i} ") for i, text in enumerate(kept))


def test_fit_history_sends_the_message_even_when_nothing_else_fits() -> None:
    library = PromptLibrary.load(PROMPTS)
    request = message()
    template = library.select(request, {})
    prompt = fit_history(
        lambda turns: library.render(
            template, message=request, customer={}, history=turns, now=datetime.now(UTC)
        ),
        history_of(4, words=20),
        budget_tokens=10,
        model=MODEL,
    )
    assert len(prompt.messages) == 2


async def answer_one(resources: Resources, request: CustomerMessage) -> Fate:
    [fate] = await answer(resources, [request])
    return fate


async def answered(resources: Resources, request: CustomerMessage) -> Reply:
    """The LLM's reply to `request`, answered now."""
    fate = await answer_one(resources, request)
    assert isinstance(fate, Answered)
    return fate.reply


@pytest.fixture
async def resources(service_settings: Settings) -> AsyncIterator[Resources]:
    bundle = Resources.build(service_settings)
    try:
        yield bundle
    finally:
        await bundle.aclose()


async def test_answer_uses_profile_and_history_and_replays_a_stored_reply(
    resources: Resources, mock_admin: MockAdmin
) -> None:
    async with aioredis.from_url(resources.settings.redis_url.get_secret_value()) as redis:
        await redis.hset("customer:cust-7", mapping={"name": "Ada", "tier": "silver"})
    first = message("First question", customer_id="cust-7")
    reply = await answered(resources, first)
    assert reply.text.startswith("Hi Ada,")

    # Recorded, but no broker has taken it yet: published again.
    assert await answer_one(resources, first) == Replayed(reply, None)
    await resources.context.mark_published([first.message_id])
    assert await answer_one(resources, first) == AlreadyPublished(reply)
    assert len(await mock_admin.requests()) == 1

    second = await answered(
        resources,
        CustomerMessage(message_id="m-2", conversation_id="c-1", text="Second one", customer_id="cust-7"),
    )
    assert "1 earlier message" in second.text or "2 earlier messages" in second.text


async def test_answer_without_redis_still_replies(service_settings: Settings, mock_admin: MockAdmin) -> None:
    settings = Settings.model_validate(
        {
            "OPENAI_BASE_URL": service_settings.openai_base_url,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "ENRICHER_PROMPTS_DIR": str(PROMPTS),
        }
    )
    bundle = Resources.build(settings)
    try:
        reply = await answered(bundle, message(customer_id="cust-7"))
    finally:
        await bundle.aclose()
    assert reply.status == "ok"
    assert reply.text.startswith("Hi there,")


async def test_an_answer_with_key_shaped_text_is_replaced_by_the_fallback(
    resources: Resources, mock_admin: MockAdmin
) -> None:
    result = await answer_one(resources, message("my key is sk-proj-abcdefghijklmnop, help"))
    assert isinstance(result, Fallback)
    assert "sk-proj" not in result.reply.text
    assert result.reply.status == "fallback"
    assert result.dead_letter is not None
    assert result.dead_letter.kind == "guard_blocked"
    assert result.dead_letter.detail.startswith("secret: ")
    assert "sk-proj" not in result.dead_letter.detail


def counter(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_replies_carry_cached_tokens_and_cost_and_the_metrics_add_up(
    resources: Resources, mock_admin: MockAdmin
) -> None:
    labels = {"model": MODEL, "template": "support_reply"}
    kinds = ("prompt", "cached", "completion")
    before = {kind: counter("enricher_llm_tokens_total", labels | {"kind": kind}) for kind in kinds}
    cost_before = counter("enricher_llm_cost_usd_total", labels)

    replies = [
        await answered(resources, CustomerMessage(message_id=f"m-{n}", conversation_id=f"c-{n}", text="Hi"))
        for n in range(3)
    ]

    usages = [reply.usage for reply in replies]
    assert {reply.prompt.name for reply in replies} == {"support_reply"}
    assert usages[0].cached_tokens == 0
    assert 0 < usages[1].cached_tokens < usages[1].prompt_tokens  # the same system prompt again
    for usage in usages:
        assert usage.cost_usd == pytest.approx(resources.prices.cost_usd(MODEL, usage))
        assert usage.cost_usd is not None
        assert usage.cost_usd > 0
    for kind, field in zip(kinds, ("prompt_tokens", "cached_tokens", "completion_tokens"), strict=True):
        added = counter("enricher_llm_tokens_total", labels | {"kind": kind}) - before[kind]
        assert added == sum(getattr(usage, field) for usage in usages)
    cost_added = counter("enricher_llm_cost_usd_total", labels) - cost_before
    assert cost_added == pytest.approx(sum(usage.cost_usd or 0 for usage in usages))


async def test_a_refused_input_gets_the_fallback_and_a_dead_letter(
    resources: Resources, mock_admin: MockAdmin
) -> None:
    await mock_admin.script({"status": 400})
    fate = await answer_one(resources, message("refused"))
    assert isinstance(fate, Fallback)
    assert (fate.reply.status, fate.reply.prompt.name) == ("fallback", "fallback")
    assert fate.dead_letter is not None
    assert fate.dead_letter.kind == "llm_rejected"
    assert fate.label == "fallback"


async def test_no_answer_in_time_is_a_recorded_fallback_and_a_dead_letter(
    service_env: dict[str, str], mock_admin: MockAdmin
) -> None:
    deadline = {"ENRICHER_LLM_DEADLINE_S": "1", "ENRICHER_LLM_TIMEOUT_S": "1"}
    bundle = Resources.build(Settings.model_validate(service_env | deadline))
    await mock_admin.config(hang_rate=1.0)  # put back after the test
    try:
        request = message("anyone there?")
        fate = await answer_one(bundle, request)
        replay = await answer_one(bundle, request)
    finally:
        await bundle.aclose()
    assert isinstance(fate, Fallback)
    assert fate.reply.status == "fallback"
    assert fate.dead_letter is not None
    assert fate.dead_letter.kind == "llm_unavailable"
    # Not marked published (no broker here): its dead letter may have been lost, and goes out again.
    assert replay == Replayed(fate.reply, fate.dead_letter)


async def test_anything_unforeseen_is_an_internal_dead_letter(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(resources.llm, "complete", broken)
    fates = await answer(resources, [message("hello"), message("again")])
    assert fates == [DeadLettered(Failure("internal", "RuntimeError: disk on fire"))] * 2


GERMAN_SYSTEM = "{% block system %}\nDu hilfst Kunden auf Deutsch.\n{% endblock %}\n"


@pytest.mark.parametrize(
    ("text", "named", "german"),
    [
        ("Wo ist meine Bestellung? Ich warte schon seit zwei Wochen darauf.", {}, True),
        ("Where is my order? I have been waiting for two weeks now.", {}, False),
        ("Where is my order? I have been waiting for two weeks now.", {"locale": "de-AT"}, True),
    ],
    ids=["detected", "detected-english", "named-wins"],
)
async def test_the_detected_language_is_the_locale_only_of_a_message_that_names_none(
    service_env: dict[str, str],
    mock_admin: MockAdmin,
    tmp_path: Path,
    text: str,
    named: dict[str, str],
    german: bool,
) -> None:
    prompts = shutil.copytree(PROMPTS, tmp_path / "prompts")
    write(prompts, "support_reply_de.j2", GERMAN_SYSTEM + GOOD_USER, extra="when: {locale: de}\n")
    bundle = Resources.build(Settings.model_validate(service_env | {"ENRICHER_PROMPTS_DIR": str(prompts)}))
    try:
        await answer_one(bundle, message(text, **named))
    finally:
        await bundle.aclose()
    [request] = await mock_admin.requests()
    assert ("auf Deutsch" in request["messages"][0]["content"]) is german


async def test_the_stream_gets_the_personal_data_back_even_when_a_placeholder_is_cut_in_two() -> None:
    masked = mask(["Write to ada@example.org please"])
    assert masked.texts[0] == "Write to [EMAIL_1] please"
    sent = Collected()
    sink = RestoringSink(sent, masked)
    await sink.send("We wrote to [EMA")
    await sink.send("IL_1] to")
    sink.restart()
    assert (sent.deltas, sent.restarts) == ([], 1)
    for delta in ("We wrote to [EMA", "IL_1", "] today [EM"):
        await sink.send(delta)
    await sink.flush()
    assert "".join(sent.deltas) == "We wrote to ada@example.org today [EM"


async def test_messages_answered_together_share_one_reply_one_call_and_the_store(
    resources: Resources, mock_admin: MockAdmin
) -> None:
    burst = [
        CustomerMessage(message_id=f"b-{n}", conversation_id="c-burst", text=text)
        # No order number: with one, the LLM would look the order up, a second call (test_tool_calls).
        for n, text in enumerate(("Hi", "my parcel is late", "and the box was open"))
    ]
    fates = await answer(resources, burst)
    [request] = await mock_admin.requests()
    prompt = json.dumps(request)
    assert all(m.text in prompt for m in burst)
    last = fates[-1]
    assert isinstance(last, Answered)
    reply = last.reply
    assert (reply.message_id, reply.answers) == ("b-2", ["b-0", "b-1", "b-2"])
    assert fates == [Covered(reply), Covered(reply), Answered(reply)]
    async with aioredis.from_url(resources.settings.redis_url.get_secret_value()) as redis:
        history = await redis.lrange("conversation:c-burst:history", 0, -1)
    assert [(turn["role"], turn["message_id"]) for turn in map(json.loads, history)] == [
        ("customer", "b-0"),
        ("customer", "b-1"),
        ("customer", "b-2"),
        ("agent", "b-2"),
    ]

    # A redelivery of any of them, alone or with others, is answered from the store, published once.
    assert await answer(resources, [burst[0]]) == [Replayed(reply, None)]
    again = await answer(resources, [*burst[1:], burst[2].model_copy(update={"message_id": "b-3"})])
    assert again[:2] == [Covered(reply), Replayed(reply, None)]
    assert isinstance(again[2], Answered)
    assert again[2].reply.answers == ["b-3"]
    assert len(await mock_admin.requests()) == 2


async def test_each_message_a_fallback_answers_together_keeps_its_dead_letter(
    resources: Resources, mock_admin: MockAdmin
) -> None:
    await mock_admin.script({"status": 400})
    burst = [
        CustomerMessage(message_id=f"f-{n}", conversation_id="c-refused", text=f"line {n}") for n in range(3)
    ]
    fates = await answer(resources, burst)
    last = fates[-1]
    assert isinstance(last, Fallback)
    assert last.dead_letter is not None
    assert last.dead_letter.kind == "llm_rejected"
    assert fates == [Covered(last.reply, last.dead_letter)] * 2 + [last]


class CountingConnection(Connection):
    """A connection to the real server that counts its writes: one per round trip, a pipeline's
    commands going out in one write."""

    writes = 0

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counted(resources: Resources) -> AsyncIterator[Resources]:
    pool = BlockingConnectionPool.from_url(
        resources.settings.redis_url.get_secret_value(),
        connection_class=CountingConnection,
        decode_responses=True,
        max_connections=8,
    )
    client = Redis.from_pool(pool)
    await client.ping()  # the connection's own set-up commands are not the pipeline's
    store = ContextStore(client, history_turns=20, ttl_s=60)
    try:
        yield dataclasses.replace(resources, context=store)
    finally:
        await store.aclose()


async def round_trips(work: Awaitable[object]) -> int:
    CountingConnection.writes = 0
    await work
    return CountingConnection.writes


async def test_a_message_reads_in_one_round_trip_and_records_in_one_more(
    counted: Resources, mock_admin: MockAdmin
) -> None:
    first = message("Where is my parcel?", customer_id="cust-7")
    assert await round_trips(answer(counted, [first])) == 2  # lookup, then reply and turns
    burst = [CustomerMessage(message_id=f"r-{n}", conversation_id="c-rt", text=f"line {n}") for n in range(3)]
    assert await round_trips(answer(counted, burst)) == 2  # however many it answers
    assert await round_trips(answer(counted, [first])) == 1  # a redelivery: the lookup finds it
    assert len(await mock_admin.requests()) == 2


async def test_replies_published_together_are_marked_in_one_round_trip(counted: Resources) -> None:
    context = counted.context
    ids = [[f"p-{n}"] for n in range(20)]
    assert await round_trips(asyncio.gather(*(context.mark_published(batch) for batch in ids))) <= 2
    async with aioredis.from_url(counted.settings.redis_url.get_secret_value()) as redis:
        assert await redis.exists(*(published_key(batch[0]) for batch in ids)) == 20
