"""The orders topic into Redis through a real worker: kept, replaced, forgotten; bad records
dead-lettered; and the customer's orders in the prompt of their next message."""

from __future__ import annotations

import base64

import pytest
import redis.asyncio as aioredis

from app.context import ContextStore
from app.redis_client import connect
from app.redis_keys import orders_key
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.kafka import at_least, json_values, produce_many, read_topic, worker_caught_up
from tests.helpers.messages import request, requests_for
from tests.helpers.orders import order, order_value
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e


async def test_the_worker_keeps_each_customer_s_orders_and_dead_letters_bad_records(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    topic = env["ENRICHER_ORDERS_TOPIC"]
    bad = [
        ("cust-1", b"{not json"),
        ("cust-1", b'{"order_id": "A-9", "customer_id": "cust-1", "status": "lost"}'),
        ("cust-2", order_value(order("A-7", customer_id="cust-1"))),  # keyed by someone else
    ]
    await produce_many(
        kafka,
        topic,
        [
            ("cust-1", order_value(order("A-1", status="packed", updated_minutes=1))),
            ("cust-1", order_value(order("A-1", status="shipped", updated_minutes=2))),
            ("cust-1", order_value(order("A-2", placed_days=1))),
            ("cust-gone", order_value(order("G-1", customer_id="cust-gone"))),
            ("cust-gone", None),
            *bad,
        ],
    )
    await worker_factory()
    # Every order record, on whichever partition, is in Redis (or gone from it) once committed.
    await worker_caught_up(kafka, env)

    context = ContextStore(connect(env["REDIS_URL"], 2, cluster=False), history_turns=0, ttl_s=60)
    try:
        assert [o.order_id for o in await context.orders("cust-1")] == ["A-2", "A-1"]
        statuses = {o.order_id: o.status for o in await context.orders("cust-1")}
        assert statuses == {"A-1": "shipped", "A-2": "shipped"}
    finally:
        await context.aclose()
    async with aioredis.from_url(env["REDIS_URL"]) as redis:
        assert not await redis.exists(orders_key("cust-gone"))
        assert await redis.ttl(orders_key("cust-1")) > 0

    letters = json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(len(bad))))
    assert sorted(base64.b64decode(letter["raw_b64"]) for letter in letters) == sorted(v for _, v in bad)
    assert {letter["source"]["topic"] for letter in letters} == {topic}
    details = sorted(letter["error"]["detail"] for letter in letters)
    assert [detail.split(":")[1].strip() for detail in details] == [
        "not JSON",
        "status",
        "the record's key is not its customer_id 'cust-1'",
    ]

    # The customer's next message is answered with their orders in the prompt, newest first.
    question = "Where is my order, please?"
    await produce_many(
        kafka, env["ENRICHER_INPUT_TOPIC"], [request("m-ask", "c-ask", question, customer_id="cust-1")]
    )
    [reply] = json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(1)))
    assert "Your latest order A-2 is shipped" in reply["text"]  # the mock read it off the prompt
    [asked] = requests_for(await mock_admin.requests(), question)
    prompt = asked["messages"][-1]["content"]
    assert prompt.index("- A-2: shipped") < prompt.index("- A-1: shipped")
