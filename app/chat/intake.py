"""A customer's message from the page onto the input topic, checked as the worker checks it.

The record is built here, then validated by the worker's own `parse_message` with the same
`ENRICHER_MAX_INPUT_CHARS`, so what the gateway accepts the worker answers, and what the worker
would dead-letter is refused before it reaches Kafka.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from app.errors import InvalidMessage
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, stop_client
from app.observability.tracing import TraceContext
from app.schemas import CustomerMessage, parse_message, rfc3339, utc_now
from app.settings import Settings

FIELDS = ("conversation_id", "customer_id", "text")
"""What a page may set; the gateway adds `message_id`, `channel` and `sent_at`."""


@dataclass(frozen=True)
class Outgoing:
    """A checked input record: its value, its headers (a new trace) and what it says."""

    value: bytes
    headers: list[tuple[str, bytes]]
    message: CustomerMessage
    trace: TraceContext


def outgoing(body: object, max_input_chars: int) -> Outgoing:
    """The input record for a page's JSON body; raises the worker's BadInput when it is refused.

    Values are taken as sent (a number for `text` is refused, as the worker refuses it).
    """
    if not isinstance(body, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(body).__name__}")
    document = {name: body[name] for name in FIELDS if name in body}
    document |= {"message_id": f"m-{uuid.uuid4()}", "channel": "chat", "sent_at": rfc3339(utc_now())}
    value = json.dumps(document, ensure_ascii=False).encode()
    trace = TraceContext.new()
    headers = trace.headers()
    return Outgoing(value, headers, parse_message(value, max_input_chars, headers), trace)


class Intake:
    """The gateway's producer to the input topic (started and stopped with the gateway)."""

    def __init__(self, settings: Settings) -> None:
        self._bootstrap = settings.kafka_bootstrap_servers
        self._security = KafkaSecurity.from_settings(settings)
        self._topic = settings.input_topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect to the broker (KafkaError or TimeoutError when it does not answer)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", **self._security.client_options()
        )
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await self._producer.start()
        except BaseException:
            await self.stop()
            raise

    async def send(self, record: Outgoing) -> None:
        """Produce the record keyed by its conversation and wait for the broker to have it."""
        assert self._producer is not None, "Intake.start() first"
        key = record.message.conversation_id.encode()
        send = self._producer.send_and_wait(self._topic, record.value, key=key, headers=record.headers)
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await send

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            await stop_client(self._producer)
