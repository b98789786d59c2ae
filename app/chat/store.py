"""What the gateway keeps in Redis, by the worker's key layout: customer profiles to choose
from, a stored reply for a page that missed it while it was offline, and who owns a conversation."""

from __future__ import annotations

import json
from typing import Any

from app.redis_client import FAILURES, RedisClient, connect
from app.redis_keys import owner_key, profile_key, reply_key
from app.settings import Settings

MAX_CUSTOMERS = 100
MAX_CONNECTIONS = 8


class StoreUnavailable(Exception):
    """Redis did not answer."""


class ChatStore:
    """Profiles and stored replies, read only; conversations' owners, written once each."""

    def __init__(self, settings: Settings) -> None:
        self._owner_ttl_s = settings.history_ttl_s  # the owner lives as long as the history
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

    async def claim(self, conversation_id: str, customer_id: str) -> str:
        """The conversation's owner: `customer_id` if nobody owned it (now they do), else who does.

        Each claim by the owner renews the key for as long as the history is kept, so another
        customer never inherits a history the worker still holds.
        """
        key = owner_key(conversation_id)
        try:
            previous = await self._redis.set(key, customer_id, nx=True, get=True, ex=self._owner_ttl_s)
            if previous is None:
                return customer_id
            if str(previous) == customer_id:
                await self._redis.expire(key, self._owner_ttl_s)
        except FAILURES as error:
            raise StoreUnavailable(str(error)) from None
        return str(previous)

    async def owner(self, conversation_id: str) -> str | None:
        """Who owns the conversation; None while nobody does."""
        try:
            owner = await self._redis.get(owner_key(conversation_id))
        except FAILURES as error:
            raise StoreUnavailable(str(error)) from None
        return None if owner is None else str(owner)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._redis.aclose()
