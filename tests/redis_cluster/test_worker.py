"""A real worker on a real Redis Cluster: context, history and the reply store, and a primary
killed while messages flow."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster

from devstack.mock_llm.admin import MockAdmin
from devstack.redis_cluster import EmbeddedRedisCluster
from devstack.redis_server import EmbeddedRedis
from tests.helpers.delivery import assert_consistent_duplicates, calls_per_text, replies_to_all
from tests.helpers.kafka import answered, json_values, produce, produce_many, read_topic
from tests.helpers.messages import request, requests_for
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e


def on_cluster(url: str) -> dict[str, str]:
    return {"REDIS_URL": url, "ENRICHER_REDIS_CLUSTER": "on"}


def replies_of(message_id: str, count: int) -> object:
    return lambda records: sum(v["message_id"] == message_id for v in json_values(records)) >= count


async def customer_served_by(cluster: EmbeddedRedisCluster, node: EmbeddedRedis) -> str:
    """A customer id whose profile key lives on `node`."""
    for n in itertools.count():
        if await cluster.primary_of(f"customer:cust-{n}") is node:
            return f"cust-{n}"
    raise AssertionError("unreachable")


@pytest.fixture
async def own_cluster() -> AsyncIterator[EmbeddedRedisCluster]:
    """A cluster for this test alone: it loses a primary."""
    async with EmbeddedRedisCluster() as cluster:
        yield cluster


async def test_context_history_and_reply_store_on_a_cluster(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    cluster_url: str,
) -> None:
    env = enricher_env
    async with RedisCluster.from_url(cluster_url, decode_responses=True) as redis:
        await redis.hset("customer:cust-1", mapping={"name": "Ada", "tier": "gold"})  # as a profile tool does
        # One reply per message: each key of each reply is checked (coalesced replies on a
        # cluster are in the next test).
        await worker_factory(on_cluster(cluster_url) | {"ENRICHER_COALESCE": "off"})
        inputs = [request(f"m-{n}", "c-1", f"Question {n}", customer_id="cust-1") for n in (1, 2)]
        await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
        # Caught up: the worker commits a message once its published mark is written.
        replies = await replies_to_all(
            kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=30, caught_up=env
        )
        assert all(r["text"].startswith("Hi Ada,") for r in replies), replies
        second = requests_for(await mock_admin.requests(), "Question 2")[0]
        assert [m["content"] for m in second["messages"][1:-1]] == ["Question 1", replies[0]["text"]]

        # The contract's literal keys, in three different hash slots.
        assert json.loads(await redis.get("reply:m-1"))["text"] == replies[0]["text"]
        assert await redis.exists("reply:m-1:published", "reply:m-2:published") == 2
        assert len(await redis.lrange("conversation:c-1:history", 0, -1)) == 4

        # A crash after the publish, before its mark: the redelivery is answered from the store.
        await redis.delete("reply:m-1:published")
        await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
        records = await read_topic(
            kafka, env["ENRICHER_REPLY_TOPIC"], until=replies_of("m-1", 2), timeout_s=30, caught_up=env
        )
    again = json_values(records)
    assert_consistent_duplicates(again)
    assert [r["message_id"] for r in again] == ["m-1", "m-2", "m-1"]  # m-2 was marked published
    assert calls_per_text(await mock_admin.requests()) == {"Question 1": 1, "Question 2": 1}


@SEVERAL_PROCESSES
async def test_a_primary_killed_mid_run_loses_no_reply_and_context_comes_back(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    own_cluster: EmbeddedRedisCluster,
) -> None:
    env, cluster = enricher_env, own_cluster
    victim = cluster.nodes[0]  # the node REDIS_URL names, and a primary
    customer = await customer_served_by(cluster, victim)
    async with RedisCluster.from_url(cluster.url, decode_responses=True) as redis:
        await redis.hset(f"customer:{customer}", mapping={"name": "Grace"})
    # Slow enough that the replies to the later turns (answered together) are still being made
    # when the primary dies.
    await mock_admin.config(latency_ms=500, jitter_ms=100)
    worker = await worker_factory(on_cluster(cluster.url))
    inputs = [
        request(f"c{c}-{t}", f"c{c}", f"turn {t} of c{c}", customer_id=customer)
        for t in range(6)
        for c in range(20)
    ]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=lambda records: len(records) >= 20)
    victim.kill()

    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60, caught_up=env)
    assert set(answered(replies)) == {json.loads(value)["message_id"] for _, value in inputs}
    assert_consistent_duplicates(replies)
    assert json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"])) == []
    assert worker.process.poll() is None
    assert "redis unavailable" in worker.process.log_path.read_text()  # the kill hit messages in flight

    # The replica took over the profile's slots; the worker finds it by itself.
    await cluster.wait_ok()
    assert (await cluster.primary_of(f"customer:{customer}")) is not victim
    deadline = time.monotonic() + 30
    for probe in itertools.count():  # the worker may still be in its cool-down
        conversation = f"p-{probe}"
        await produce(
            kafka,
            env["ENRICHER_INPUT_TOPIC"],
            *request(conversation, conversation, "hello", customer_id=customer),
        )
        records = await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=replies_of(conversation, 1))
        text = next(r["text"] for r in json_values(records) if r["message_id"] == conversation)
        if text.startswith("Hi Grace,"):
            break
        assert time.monotonic() < deadline, "no context from the cluster 30 s after the failover"
    await produce(
        kafka,
        env["ENRICHER_INPUT_TOPIC"],
        *request("p-next", conversation, "and then?", customer_id=customer),
    )
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=replies_of("p-next", 1))
    follow_up = requests_for(await mock_admin.requests(), "and then?")[0]
    assert [m["content"] for m in follow_up["messages"][1:-1]] == ["hello", text]
