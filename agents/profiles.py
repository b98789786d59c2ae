"""The profile agent: `customer.profiles` records become `customer:{customer_id}` hashes."""

from __future__ import annotations

import json
import logging

import faust

from agents.redis_retry import until_redis_takes
from app.context import ContextStore, encode_profile
from app.kafka.faust_app import Topics
from app.kafka.outbox import DeadLetters
from app.observability import metrics

log = logging.getLogger(__name__)

RETRYING = "profile not applied; retrying"


class ProfileAgent:
    """Applies profile updates in order; a null value deletes the profile."""

    def __init__(self, context: ContextStore, topics: Topics, dead_letters: DeadLetters) -> None:
        self._context = context
        self._topics = topics
        self._dead_letters = dead_letters

    def attach(self, app: faust.App) -> None:
        """Register the agent on the app."""
        app.agent(self._topics.profiles, name="profiles")(self._consume)

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await self.apply(event.message)

    async def apply(self, message: faust.types.Message) -> None:
        """Write one profile record to Redis, retrying while Redis is down; bad records to the DLQ."""
        try:
            customer_id = (message.key or b"").decode("utf-8")
            fields = None if message.value is None else _profile_fields(message.value)
        except (UnicodeDecodeError, ValueError) as error:
            await self._reject(message, f"profile: {error}")
            return
        if not customer_id:
            await self._reject(message, "profile: empty key")
            return
        # Until Redis takes it: the partition waits, since a later record may overwrite this one.
        if fields is None:
            await until_redis_takes(lambda: self._context.delete_profile(customer_id), RETRYING)
        else:
            await until_redis_takes(lambda: self._context.put_profile(customer_id, fields), RETRYING)
        metrics.PROFILE_UPDATES.labels("delete" if fields is None else "put").inc()

    async def _reject(self, message: faust.types.Message, detail: str) -> None:
        await self._dead_letters.reject("invalid_message", detail, message)


def _profile_fields(raw: bytes) -> dict[str, str]:
    document = json.loads(raw.decode("utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"expected a JSON object, got {type(document).__name__}")
    return encode_profile(document)
