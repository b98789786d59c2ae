"""A conversation's handoff state in Redis: the contract's `conversation:{id}:state` and our count of
fallback replies in a row, and giving the conversation back to the AI.

The one module that sends commands on these two keys. The context store (`app.context`) reads
and writes them in its own round trips, with the commands queued here on its pipelines.

On a Redis Cluster the two keys are in different hash slots (the names have no hash tags), so
each command here names one key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from app.errors import ContextUnavailable
from app.redis_client import FAILURES, OPERATION_TIMEOUT_S, AnyPipeline, RedisClient
from app.redis_keys import fallback_streak_key, state_key

HUMAN = "human"
"""What `state_key` holds while a human has the conversation."""
REDIS_TIMEOUT_S = OPERATION_TIMEOUT_S * 2  # a try and its retries, as the worker allows
LOOKUP_RESULTS = 3
"""How many results `queue_lookup` adds to a pipeline's."""


def queue_lookup(pipe: AnyPipeline, conversation_id: str, ttl_s: int) -> None:
    """Queue the reads `read_lookup` takes: the state, which stays a human's `ttl_s` longer (each
    message renews its expiry; nothing happens when no human has it), and the fallback streak."""
    pipe.get(state_key(conversation_id))
    pipe.expire(state_key(conversation_id), ttl_s)
    pipe.get(fallback_streak_key(conversation_id))


def read_lookup(results: Sequence[Any]) -> tuple[bool, int]:
    """Whether Redis says a human has the conversation, and its fallbacks in a row, from the
    `LOOKUP_RESULTS` results of `queue_lookup`."""
    state, _renewed, streak = results
    return state == HUMAN, int(streak) if streak and streak.isdigit() else 0


def queue_streak(pipe: AnyPipeline, conversation_id: str, *, fallback: bool, before: int, ttl_s: int) -> None:
    """Queue counting a fallback reply into the conversation's fallbacks in a row (`before` of them
    until now), or ending the count at any other reply."""
    streak = fallback_streak_key(conversation_id)
    if fallback:
        pipe.incr(streak)
        pipe.expire(streak, ttl_s)
    elif before:
        pipe.delete(streak)


def hand_over(redis: RedisClient, conversation_id: str, ttl_s: int) -> Awaitable[Any]:
    """The command that gives the conversation to a human for `ttl_s` (renewed by its messages),
    for the caller to await within its own failure handling."""
    return redis.set(state_key(conversation_id), HUMAN, ex=ttl_s)


async def release(redis: RedisClient, conversation_id: str) -> bool:
    """Give the conversation back to the AI: delete its state and its fallback streak.

    True when a human had it (its state was set). The streak goes too, so that the fallbacks that
    led to the handoff do not hand the conversation over again at the next one. Raises
    ContextUnavailable when Redis fails; a release may be repeated.
    """
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_S):
            # The streak first: a release repeated after a failure between the two deletes still
            # finds the state, and says truly that a human had the conversation.
            await redis.delete(fallback_streak_key(conversation_id))
            released = await redis.delete(state_key(conversation_id))
    except FAILURES as error:
        raise ContextUnavailable(f"release: {type(error).__name__}") from error
    return bool(released)
