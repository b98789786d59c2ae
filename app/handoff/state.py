"""A conversation's handoff state in Redis: the contract's `conversation:{id}:state` and our count of
fallback replies in a row, and giving the conversation back to the AI.

On a Redis Cluster the two keys are in different hash slots (the names have no hash tags), so
each command here names one key.
"""

from __future__ import annotations

import asyncio

from app.errors import ContextUnavailable
from app.redis_client import FAILURES, OPERATION_TIMEOUT_S, RedisClient
from app.redis_keys import fallback_streak_key, state_key

HUMAN = "human"
"""What `state_key` holds while a human has the conversation."""
REDIS_TIMEOUT_S = OPERATION_TIMEOUT_S * 2  # a try and its retries, as the worker allows


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
