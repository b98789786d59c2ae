"""The Redis layer on a real server: lookup, record once, history kept once, and Redis down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.context import ContextStore
from app.handoff import HeldConversations
from app.redis_client import connect
from app.redis_keys import state_key
from app.schemas import reply_id_for
from app.settings import Settings
from tests.helpers.replies import reply, turns


@pytest.fixture
async def store(service_settings: Settings) -> AsyncIterator[ContextStore]:
    context = ContextStore(
        connect(service_settings.redis_url.get_secret_value(), 4, cluster=False), history_turns=4, ttl_s=60
    )
    try:
        yield context
    finally:
        await context.aclose()


async def test_record_keeps_the_first_reply_and_its_turns_once(store: ContextStore) -> None:
    first = reply("m-1", "first answer")
    assert await store.record(first, turns("m-1", "first answer")) == {"m-1": first}
    second = reply("m-1", "another answer")
    assert await store.record(second, turns("m-1", "another answer")) == {"m-1": first}
    known = await store.lookup(["m-1"], None, "c-1")
    assert known.stored == {"m-1": first}
    assert [turn.text for turn in known.history] == ["question", "first answer"]


async def test_without_history_only_the_reply_is_stored(service_settings: Settings) -> None:
    redis_url = service_settings.redis_url.get_secret_value()
    context = ContextStore(connect(redis_url, 1, cluster=False), history_turns=0, ttl_s=60)
    try:
        first = reply("m-1", "first answer")
        assert await context.record(first, turns("m-1", "first answer")) == {"m-1": first}
        assert await context.record(reply("m-1", "again"), turns("m-1", "again")) == {"m-1": first}
    finally:
        await context.aclose()
    async with aioredis.from_url(redis_url) as redis:
        assert not await redis.exists("conversation:c-1:history")
        assert await redis.exists("reply:m-1")


async def test_history_is_trimmed_and_expires(store: ContextStore, service_settings: Settings) -> None:
    for n in range(5):
        await store.record(reply(f"m-{n}", f"answer {n}"), turns(f"m-{n}", f"answer {n}"))
    known = await store.lookup(["m-new"], None, "c-1")
    assert [turn.text for turn in known.history] == ["question", "answer 3", "question", "answer 4"]
    async with aioredis.from_url(service_settings.redis_url.get_secret_value()) as redis:
        assert 0 < await redis.ttl("conversation:c-1:history") <= 60
        assert 0 < await redis.ttl("reply:m-0") <= 60


async def test_lookup_drops_turns_and_replies_of_others(
    store: ContextStore, service_settings: Settings
) -> None:
    async with aioredis.from_url(service_settings.redis_url.get_secret_value()) as redis:
        await redis.rpush(
            "conversation:c-1:history", turns("m-9", "x", conversation_id="c-2")[0].model_dump_json()
        )
        await redis.set("reply:m-5", reply("m-6", "not yours").model_dump_json())
        await redis.hset("customer:cust-1", mapping={"name": "Ada"})
    known = await store.lookup(["m-5"], "cust-1", "c-1")
    assert known.history == []
    assert known.stored == {}
    assert known.profile == {"name": "Ada"}


async def test_redis_down_degrades_to_no_context() -> None:
    store = ContextStore(connect("redis://127.0.0.1:1/0", 2, cluster=False), history_turns=4, ttl_s=60)
    try:
        known = await store.lookup(["m-1"], "cust-1", "c-1")
        assert (known.stored, known.profile, known.history) == ({}, {}, [])
        answer = reply("m-1", "still answered")
        assert await store.record(answer, turns("m-1", "still answered")) == {"m-1": answer}
        assert not await store.ping()
    finally:
        await store.aclose()


async def test_a_reply_is_published_once_the_broker_took_it(store: ContextStore) -> None:
    first = reply("m-9", "an answer")
    await store.record(first, turns("m-9", "an answer"))
    assert not (await store.lookup(["m-9"], None, "c-1")).published  # recorded, not yet published
    await store.mark_published(["m-9"])
    known = await store.lookup(["m-9"], None, "c-1")
    assert (known.stored, known.published) == ({"m-9": first}, {"m-9"})


async def test_a_mark_without_its_reply_means_nothing(store: ContextStore) -> None:
    await store.mark_published(["m-lost"])  # the reply expired or was never stored
    known = await store.lookup(["m-lost"], None, "c-1")
    assert (known.stored, known.published) == ({}, frozenset())


async def test_messages_another_worker_answered_meanwhile_keep_its_reply(store: ContextStore) -> None:
    theirs = reply("m-1", "their answer")
    await store.record(theirs, turns("m-1", "their answer"))
    ours = reply("m-2", "our answer to both").model_copy(update={"answers": ["m-1", "m-2"]})
    counting = await store.record(ours, turns("m-2", "our answer to both"))
    assert counting["m-1"] == theirs
    assert (counting["m-2"].message_id, counting["m-2"].answers) == ("m-2", ["m-2"])
    known = await store.lookup(["m-1", "m-2"], None, "c-1")
    assert known.stored == counting

    # When the other worker answered the last of them, ours is named after the one left.
    await store.record(reply("m-4", "theirs"), turns("m-4", "theirs"))
    late = reply("m-4", "ours").model_copy(update={"answers": ["m-3", "m-4"]})
    counting = await store.record(late, turns("m-4", "ours"))
    assert (counting["m-3"].reply_id, counting["m-3"].answers) == (reply_id_for("m-3"), ["m-3"])
    assert counting["m-4"].text == "theirs"


async def test_each_message_of_a_human_held_conversation_renews_its_state(
    store: ContextStore, service_settings: Settings
) -> None:
    await store.hand_to_human("c-h")
    async with aioredis.from_url(service_settings.redis_url.get_secret_value()) as redis:
        await redis.expire(state_key("c-h"), 5)  # as if the handoff were 55 s ago
        assert (await store.lookup(["m-1"], None, "c-h")).human
        assert await redis.ttl(state_key("c-h")) > 5  # back to the store's 60 s
        await store.lookup(["m-2"], None, "c-ai")
        assert await redis.exists(state_key("c-ai")) == 0  # no state is made for a conversation no human has


async def test_while_redis_is_down_the_handoff_topics_decide() -> None:
    held = HeldConversations(ttl_s=60)
    down = connect("redis://127.0.0.1:1/0", 2, cluster=False)
    store = ContextStore(down, history_turns=4, ttl_s=60, held=held)
    try:
        held.caught_up.set()
        held.handed_over("c-h", time.time())
        held.handed_over("c-back", time.time() - 2)
        held.released("c-back", time.time() - 1)
        assert (await store.lookup(["m-1"], None, "c-h")).human
        assert not (await store.lookup(["m-2"], None, "c-back")).human
        await store.hand_to_human("c-now")  # Redis refuses it; the worker knows it all the same
        assert (await store.lookup(["m-3"], None, "c-now")).human
    finally:
        await store.aclose()


async def test_a_handoff_redis_missed_stays_the_humans_once_redis_is_back(
    service_settings: Settings,
) -> None:
    held = HeldConversations(ttl_s=60)
    held.caught_up.set()
    held.handed_over("c-missed", time.time())  # read from the handoff topic; Redis was down then
    with_topics = ContextStore(
        connect(service_settings.redis_url.get_secret_value(), 2, cluster=False),
        history_turns=4,
        ttl_s=60,
        held=held,
    )
    try:
        assert (await with_topics.lookup(["m-1"], None, "c-missed")).human
        held.released("c-missed", time.time())
        assert not (await with_topics.lookup(["m-2"], None, "c-missed")).human
    finally:
        await with_topics.aclose()
