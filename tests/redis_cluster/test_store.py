"""The Redis layer on a real three-primary cluster: the contract's keys fall in different slots."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from app.context import ContextStore
from app.redis_client import connect
from app.redis_keys import history_key, profile_key, published_key, reply_key
from devstack.processes import free_port
from tests.helpers.replies import reply, turns

CONTRACT_KEYS = ["reply:m-1", "reply:m-1:published", "customer:cust-1", "conversation:c-1:history"]


@pytest.fixture
async def store(cluster_url: str) -> AsyncIterator[ContextStore]:
    context = ContextStore(connect(cluster_url, 4, cluster=True), history_turns=4, ttl_s=60)
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
async def raw(cluster_url: str) -> AsyncIterator[RedisCluster]:
    """A plain cluster client, as other tools that write the contract's keys use."""
    async with RedisCluster.from_url(cluster_url, decode_responses=True) as client:
        yield client


async def test_the_keys_of_one_message_are_spread_over_the_cluster(raw: RedisCluster) -> None:
    # Without this the other tests here would not show that nothing spans two slots.
    assert [
        reply_key("m-1"),
        published_key("m-1"),
        profile_key("cust-1"),
        history_key("c-1"),
    ] == CONTRACT_KEYS
    nodes = {raw.get_node_from_key(key).name for key in CONTRACT_KEYS}
    assert len({key_slot(key.encode()) for key in CONTRACT_KEYS}) == 4
    assert len(nodes) >= 2


async def test_lookup_record_publish_and_profile_across_slots(store: ContextStore, raw: RedisCluster) -> None:
    await store.put_profile("cust-1", {"name": "Ada", "tier": "gold"})
    first = reply("m-1", "first answer")
    assert await store.record(first, turns("m-1", "first answer")) == {"m-1": first}
    await store.mark_published(["m-1"])
    known = await store.lookup(["m-1"], "cust-1", "c-1")
    assert (known.stored, known.published) == ({"m-1": first}, {"m-1"})
    assert known.profile == {"name": "Ada", "tier": "gold"}
    assert [turn.text for turn in known.history] == ["question", "first answer"]
    # Under the contract's literal names, where other tools read them.
    assert json.loads(await raw.get("reply:m-1"))["text"] == "first answer"
    assert await raw.get("reply:m-1:published") == "1"
    assert await raw.hgetall("customer:cust-1") == {"name": "Ada", "tier": "gold"}
    assert len(await raw.lrange("conversation:c-1:history", 0, -1)) == 2


async def test_record_twice_keeps_the_first_reply_and_its_turns_once(store: ContextStore) -> None:
    first = reply("m-1", "first answer")
    await store.record(first, turns("m-1", "first answer"))
    assert await store.record(reply("m-1", "another answer"), turns("m-1", "another answer")) == {
        "m-1": first
    }
    known = await store.lookup(["m-1"], None, "c-1")
    assert known.stored == {"m-1": first}
    assert [turn.text for turn in known.history] == ["question", "first answer"]


async def test_history_is_trimmed_and_expires(store: ContextStore, raw: RedisCluster) -> None:
    for n in range(5):
        await store.record(reply(f"m-{n}", f"answer {n}"), turns(f"m-{n}", f"answer {n}"))
    known = await store.lookup(["m-new"], None, "c-1")
    assert [turn.text for turn in known.history] == ["question", "answer 3", "question", "answer 4"]
    assert 0 < await raw.ttl("conversation:c-1:history") <= 60
    assert 0 < await raw.ttl("reply:m-0") <= 60


async def test_put_profile_replaces_and_delete_forgets(store: ContextStore, raw: RedisCluster) -> None:
    await raw.hset("customer:cust-1", mapping={"name": "Ada", "plan": "old"})
    await store.put_profile("cust-1", {"name": "Ada L."})
    assert await store.profile("cust-1") == {"name": "Ada L."}
    await store.delete_profile("cust-1")
    assert await raw.exists("customer:cust-1") == 0


async def test_a_burst_beyond_the_connection_cap_waits_instead_of_failing(cluster_url: str) -> None:
    context = ContextStore(connect(cluster_url, 2, cluster=True), history_turns=4, ttl_s=60)
    try:
        first = reply("m-1", "first answer")
        await context.record(first, turns("m-1", "first answer"))
        found = await asyncio.gather(*(context.lookup(["m-1"], "cust-1", "c-1") for _ in range(50)))
        assert all(known.stored == {"m-1": first} for known in found)
    finally:
        await context.aclose()


async def test_no_node_reachable_degrades_to_no_context() -> None:
    context = ContextStore(
        connect(f"redis://127.0.0.1:{free_port()}/0", 2, cluster=True), history_turns=4, ttl_s=60
    )
    try:
        known = await context.lookup(["m-1"], "cust-1", "c-1")
        assert (known.stored, known.profile, known.history) == ({}, {}, [])
        answer = reply("m-1", "still answered")
        assert await context.record(answer, turns("m-1", "still answered")) == {"m-1": answer}
        assert not await context.ping()
    finally:
        await context.aclose()


async def test_a_reply_answering_several_messages_is_stored_and_marked_for_each(store: ContextStore) -> None:
    together = reply("m-3", "one answer to three").model_copy(update={"answers": ["m-1", "m-2", "m-3"]})
    assert await store.record(together, turns("m-3", "one answer to three")) == dict.fromkeys(
        together.answers, together
    )
    await store.mark_published(together.answers)
    known = await store.lookup(["m-1", "m-2", "m-3", "m-4"], None, "c-1")
    assert known.stored == {"m-1": together, "m-2": together, "m-3": together}
    assert known.published == {"m-1", "m-2", "m-3"}
