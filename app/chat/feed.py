"""The gateway's own reader of the reply, stream and handoff topics, handing each record to the hub.

No consumer group (so never the worker's, and no offsets to commit): every partition of the
three topics, from the end, since only live traffic matters to a browser. A pattern
subscription finds a topic created later (the handoff topic before handoffs are deployed)
without asking for it by name, which would make some brokers create it. aiokafka reconnects
by itself after a broker loss; a metadata request every few seconds tells `/healthz` whether
the broker answers meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from app.chat.hub import ConversationHub, EventKind
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, stop_client
from app.polling import NotYet, poll
from app.settings import Settings

log = logging.getLogger(__name__)
WATCH_S = 2.0
METADATA_MAX_AGE_MS = 5000  # how soon a topic created later is read
FETCH_MAX_WAIT_MS = 100  # a chunk is worth little once the next one is due


@dataclass
class BrokerState:
    """What `/healthz` says about the broker."""

    connected: bool = False
    since: float = 0.0
    detail: str = "not connected yet"

    def change(self, connected: bool, detail: str) -> None:
        """Record the state; logs only the changes."""
        if connected != self.connected:
            log.log(logging.INFO if connected else logging.WARNING, "broker %s", detail)
            self.since = time.time()
        self.connected, self.detail = connected, detail


class ReplyFeed:
    """Reads the three topics while the gateway runs; `start` returns once it reads from the end."""

    def __init__(self, settings: Settings, hub: ConversationHub) -> None:
        self._bootstrap = settings.kafka_bootstrap_servers
        self._security = KafkaSecurity.from_settings(settings)
        self._kinds: dict[str, EventKind] = {
            settings.stream_topic: "chunk",
            settings.reply_topic: "reply",
            settings.handoff_topic: "handoff",
        }
        self._required = (settings.stream_topic, settings.reply_topic)
        self._hub = hub
        self.broker = BrokerState()
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Connect, take every partition of the topics at their end, and start reading.

        Raises KafkaError when the broker does not answer, NotYet when the reply or stream
        topic does not exist, within KAFKA_TIMEOUT_S.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            **self._security.client_options(),
        )
        self._consumer = consumer
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await consumer.start()
            consumer.subscribe(pattern="^(" + "|".join(map(re.escape, self._kinds)) + ")$")
            await poll(self._at_end, KAFKA_TIMEOUT_S, 0.1)
        except BaseException:
            await self.stop()
            raise
        self.broker.change(True, "connected")
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._watch())]

    async def _at_end(self) -> None:
        """Every partition of the required topics assigned and its position (the end) known."""
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        missing = [t for t in self._required if not any(p.topic == t for p in assigned)]
        if missing:
            raise NotYet(f"topic {missing[0]} does not exist")
        for partition in assigned:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await self._consumer.position(partition)

    async def stop(self) -> None:
        """Stop reading and close the consumer."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._consumer is not None:
            await stop_client(self._consumer)

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                async with asyncio.timeout(KAFKA_TIMEOUT_S):
                    batches = await self._consumer.getmany(timeout_ms=1000)
            except (KafkaError, TimeoutError) as error:  # aiokafka reconnects; go on asking
                log.warning("reading the reply topics failed: %r", error)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._route(record)

    def _route(self, record: ConsumerRecord) -> None:
        """Hand the record to its conversation; a record without one is nobody's to show."""
        try:
            document = json.loads(record.value)
        except (TypeError, ValueError):
            return
        conversation_id = document.get("conversation_id") if isinstance(document, dict) else None
        if isinstance(conversation_id, str):
            self._hub.publish(conversation_id, self._kinds[record.topic], json.dumps(document))

    async def _watch(self) -> None:
        """Ask the broker for metadata now and then: the one sign that it answers while idle."""
        assert self._consumer is not None
        while True:
            try:
                async with asyncio.timeout(KAFKA_TIMEOUT_S):
                    topics = await self._consumer.topics()
            except (KafkaError, TimeoutError) as error:
                self.broker.change(False, f"unreachable: {type(error).__name__}")
            else:
                present = all(topic in topics for topic in self._required)
                self.broker.change(True, "connected" if present else "connected, reply topics missing")
            await asyncio.sleep(WATCH_S)
