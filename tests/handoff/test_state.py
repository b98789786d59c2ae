"""A conversation's handoff state on a real Redis server: the keys, and giving it back to the AI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.errors import ContextUnavailable
from app.handoff import HUMAN, release
from app.redis_client import RedisClient, connect
from app.redis_keys import fallback_streak_key, state_key
from app.settings import Settings


@pytest.fixture
async def redis(service_settings: Settings) -> AsyncIterator[RedisClient]:
    client = connect(service_settings.redis_url.get_secret_value(), 2, cluster=False)
    try:
        yield client
    finally:
        await client.aclose()


def test_the_keys_are_the_contracts_and_ours() -> None:
    assert state_key("c-1") == "conversation:c-1:state"
    assert fallback_streak_key("c-1") == "conversation:c-1:fallbacks"


async def test_release_deletes_the_state_and_the_streak_of_that_conversation(redis: RedisClient) -> None:
    for conversation in ("c-1", "c-2"):
        await redis.set(state_key(conversation), HUMAN)
        await redis.set(fallback_streak_key(conversation), 3)

    assert await release(redis, "c-1") is True

    assert await redis.exists(state_key("c-1"), fallback_streak_key("c-1")) == 0
    assert await redis.get(state_key("c-2")) == HUMAN
    assert await redis.get(fallback_streak_key("c-2")) == "3"


async def test_releasing_a_conversation_no_human_has_says_so(redis: RedisClient) -> None:
    await redis.set(fallback_streak_key("c-3"), 2)

    assert await release(redis, "c-3") is False
    assert await redis.exists(fallback_streak_key("c-3")) == 0  # the streak goes all the same
    assert await release(redis, "c-3") is False  # and again: nothing to do, no error


async def test_release_without_redis_raises_context_unavailable() -> None:
    down = connect("redis://127.0.0.1:1/0", 1, cluster=False)
    try:
        with pytest.raises(ContextUnavailable, match=r"^release: "):
            await release(down, "c-1")
    finally:
        await down.aclose()
