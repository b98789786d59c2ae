"""What the gateway reads from Redis, by the worker's key layout: customer profiles to choose
from, and a stored reply for a page that missed it while it was offline."""

from __future__ import annotations

import json
from typing import Any

from app.redis_client import FAILURES, RedisClient, connect
from app.redis_keys import profile_key, reply_key
from app.settings import Settings

MAX_CUSTOMERS = 100
MAX_CONNECTIONS = 8


class StoreUnavailable(Exception):
    """Redis did not answer."""


class ChatStore:
    """Read-only access to profiles and stored replies; never writes."""

    def __init__(self, settings: Settings) -> None:
        self._redis: RedisClient = connect(
            settings.redis_url.get_secret_value(), MAX_CONNECTIONS, cluster=settings.redis_cluster == "on"
        )

    async def customers(self) -> list[dict[str, str]]:
        """Up to MAX_CUSTOMERS profiles, by customer id, each with its `customer_id`."""
        prefix = profile_key("")
        found: list[dict[str, str]] = []
        try:
            keys = sorted([key async for key in self._redis.scan_iter(match=f"{prefix}*", count=500)])
            for key in keys[:MAX_CUSTOMERS]:
                fields = {str(name): str(value) for name, value in (await self._redis.hgetall(key)).items()}
                if fields:
                    found.append({"customer_id": str(key).removeprefix(prefix), **fields})
        except FAILURES as error:
            raise StoreUnavailable(str(error)) from None
        return found

    async def reply(self, conversation_id: str, message_id: str) -> dict[str, Any] | None:
        """The stored reply to `message_id` if it belongs to `conversation_id`, else None."""
        try:
            raw = await self._redis.get(reply_key(message_id))
        except FAILURES as error:
            raise StoreUnavailable(str(error)) from None
        try:
            document = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if isinstance(document, dict) and document.get("conversation_id") == conversation_id:
            return document
        return None

    async def aclose(self) -> None:
        """Close the connections."""
        await self._redis.aclose()
