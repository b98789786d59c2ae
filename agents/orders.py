"""The orders agent: `customer.orders` records become the customer's `customer:{customer_id}:orders` hash."""

from __future__ import annotations

import faust

from agents.redis_retry import until_redis_takes
from app.context import ContextStore
from app.errors import BadInput
from app.kafka.faust_app import Topics
from app.kafka.outbox import DeadLetters
from app.observability import metrics
from app.schemas import parse_order

RETRYING = "order not applied; retrying"


class OrderAgent:
    """Keeps each customer's recent orders in Redis; a null value forgets the customer's orders."""

    def __init__(self, context: ContextStore, topics: Topics, dead_letters: DeadLetters) -> None:
        self._context = context
        self._topics = topics
        self._dead_letters = dead_letters

    def attach(self, app: faust.App) -> None:
        """Register the agent on the app."""
        app.agent(self._topics.orders, name="orders")(self._consume)

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await self.apply(event.message)

    async def apply(self, message: faust.types.Message) -> None:
        """Write one order record to Redis, retrying while Redis is down; bad records to the DLQ."""
        if message.value is None:
            customer_id = (message.key or b"").decode("utf-8", "replace")
            if not customer_id:
                await self._dead_letters.reject("invalid_message", "order: tombstone without a key", message)
                return
            await until_redis_takes(lambda: self._context.delete_orders(customer_id), RETRYING)
            metrics.ORDER_UPDATES.labels("delete").inc()
            return
        try:
            order = parse_order(message.value, message.key)
        except BadInput as error:
            await self._dead_letters.reject(error.kind, f"order: {error}", message)
            return
        # Until Redis takes it: the partition waits, since a later record may replace this one.
        kept = await until_redis_takes(lambda: self._context.put_order(order), RETRYING)
        metrics.ORDER_UPDATES.labels("put" if kept else "stale").inc()
