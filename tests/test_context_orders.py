"""A customer's orders in Redis on a real server: kept, replaced by `updated_at`, bounded, expiring,
read with the message's context, and none while Redis is down."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.context import MAX_ORDERS_KEPT, ContextStore
from app.errors import ContextUnavailable
from app.redis_client import connect
from app.redis_keys import orders_key
from app.settings import Settings
from tests.helpers.orders import order
from tests.helpers.polling import until

TTL_S = 60


@pytest.fixture
async def store(service_settings: Settings) -> AsyncIterator[ContextStore]:
    redis = connect(service_settings.redis_url.get_secret_value(), 4, cluster=False)
    context = ContextStore(redis, history_turns=4, ttl_s=60, orders_ttl_s=TTL_S)
    try:
        yield context
    finally:
        await context.aclose()


async def test_orders_are_kept_newest_first_and_read_with_the_context(store: ContextStore) -> None:
    await store.put_order(order("A-1", placed_days=0))
    await store.put_order(order("A-3", placed_days=2))
    await store.put_order(order("A-2", placed_days=1))
    await store.put_order(order("B-1", customer_id="cust-2"))
    known = await store.lookup(["m-1"], "cust-1", "c-1")
    assert [o.order_id for o in known.orders] == ["A-3", "A-2", "A-1"]
    assert [o.order_id for o in await store.orders("cust-2")] == ["B-1"]
    assert (await store.lookup(["m-1"], None, "c-1")).orders == []


async def test_a_later_record_replaces_an_order_and_an_earlier_one_does_not(store: ContextStore) -> None:
    assert await store.put_order(order("A-1", status="packed", updated_minutes=10))
    assert await store.put_order(order("A-1", status="shipped", updated_minutes=20))
    assert not await store.put_order(order("A-1", status="received", updated_minutes=5))
    assert [(o.order_id, o.status) for o in await store.orders("cust-1")] == [("A-1", "shipped")]


async def test_only_the_orders_placed_last_are_kept(store: ContextStore) -> None:
    for day in range(MAX_ORDERS_KEPT + 3):
        await store.put_order(order(f"A-{day}", placed_days=day))
    await store.put_order(order("A-late-record-of-an-old-order", placed_days=-5))
    kept = [o.order_id for o in await store.orders("cust-1")]
    assert kept == [f"A-{day}" for day in reversed(range(3, MAX_ORDERS_KEPT + 3))]


async def test_orders_expire_after_the_latest_record(service_settings: Settings) -> None:
    redis_url = service_settings.redis_url.get_secret_value()
    context = ContextStore(connect(redis_url, 2, cluster=False), history_turns=0, ttl_s=60, orders_ttl_s=1)
    try:
        await context.put_order(order("A-1"))
        async with aioredis.from_url(redis_url) as redis:
            assert 0 < await redis.ttl(orders_key("cust-1")) <= 1

            async def gone() -> bool:
                return not await redis.exists(orders_key("cust-1"))

            await until(gone, "the orders hash expired", timeout_s=10)
    finally:
        await context.aclose()


async def test_an_order_stored_under_another_customer_or_malformed_is_not_read(
    store: ContextStore, service_settings: Settings
) -> None:
    await store.put_order(order("A-1"))
    stray = order("X-1", customer_id="cust-2").as_record()
    async with aioredis.from_url(service_settings.redis_url.get_secret_value()) as redis:
        await redis.hset(orders_key("cust-1"), mapping={"X-1": json.dumps(stray), "bad": "{not json"})
    assert [o.order_id for o in await store.orders("cust-1")] == ["A-1"]


async def test_a_tombstone_forgets_the_customer_s_orders(store: ContextStore) -> None:
    await store.put_order(order("A-1"))
    await store.delete_orders("cust-1")
    assert await store.orders("cust-1") == []


async def test_redis_down_gives_no_orders_to_the_reply_and_an_error_to_the_writer() -> None:
    store = ContextStore(connect("redis://127.0.0.1:1/0", 2, cluster=False), history_turns=4, ttl_s=60)
    try:
        assert (await store.lookup(["m-1"], "cust-1", "c-1")).orders == []
        with pytest.raises(ContextUnavailable):
            await store.put_order(order("A-1"))
        with pytest.raises(ContextUnavailable):
            await store.orders("cust-1")
    finally:
        await store.aclose()
