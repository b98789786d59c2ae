"""Re-driving dead letters: each one's original bytes and key back onto the input topic, at most once.

What was replayed is remembered in Redis, one key per dead letter (`dlq:replayed:{topic}:{id}`),
written only after the broker has taken the replayed record: see `Replayer.replay` for why.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, TypeVar

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, ValidationError

from app.errors import BadInput
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, stop_client
from app.observability.tracing import TraceContext
from app.operator_tools.dead_letters import StoredLetter
from app.redis_client import OPERATION_TIMEOUT_S, RedisClient, connect
from app.redis_keys import history_key, published_key, replayed_key, reply_key
from app.schemas import CustomerMessage, Reply, parse_message, rfc3339, utc_now
from app.settings import Settings

T = TypeVar("T")

REPLAY_HEADER = "x-enricher-replay-of"
REDIS_TIMEOUT_S = OPERATION_TIMEOUT_S * 2  # a try and its retries, as the worker allows

Action = Literal["replayed", "already replayed", "skipped"]


class ReplayMark(BaseModel):
    """What `replayed_key` holds: which dead letter was replayed, when, and to where."""

    failed_at: str
    """The dead letter's own: a mark left from a dead-letter topic deleted and made anew (whose
    ids start again at 0) names another dead letter and does not count."""
    replayed_at: str
    to: str


@dataclass(frozen=True)
class Outcome:
    """What became of one dead letter, with a note for the operator."""

    letter_id: str
    action: Action
    note: str = ""


class Replayer:
    """Replays dead letters one at a time; without a producer (a dry run) it only says what it would do."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        producer: AIOKafkaProducer | None,
        partitions: frozenset[int] = frozenset(),
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._producer = producer
        self._partitions = partitions  # of the input topic

    async def replay(self, stored: StoredLetter) -> Outcome:
        """Put the dead letter's input back on the input topic, unless it was replayed before or
        cannot be; raises KafkaError, RedisError or TimeoutError when a service fails.

        Produce first, mark after: a crash between the two leaves the letter unmarked, and the
        next run replays it again. That duplicate input is harmless, as the worker answers a
        message_id once (its reply store). Marking first would turn the same crash into a dead
        letter marked as replayed that never was: lost without a trace.
        """
        unfit = self._unfit(stored)
        if unfit:
            return Outcome(stored.id, "skipped", unfit)
        earlier = await self._mark_of(stored)
        if earlier is not None:
            return Outcome(stored.id, "already replayed", f"at {earlier.replayed_at} to {earlier.to}")
        message = self._message(stored)
        answered = message if message is not None and await self._has_stored_fallback(message) else None
        note = f"drops the stored fallback reply to {answered.message_id}" if answered else ""
        if self._producer is None:
            return Outcome(stored.id, "replayed", note)
        if answered is not None:
            await self._drop_fallback(answered)
        source = stored.letter.source
        sent = self._producer.send_and_wait(
            self._settings.input_topic,
            stored.raw,
            key=stored.key,
            # The partition it was read from keeps it behind the conversation's earlier messages,
            # whichever partitioner its producer used; the key decides on a topic made anew smaller.
            partition=source.partition if source.partition in self._partitions else None,
            headers=_headers(stored),
        )
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            metadata = await sent
        to = f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"
        mark = ReplayMark(failed_at=stored.letter.failed_at, replayed_at=rfc3339(utc_now()), to=to)
        key = replayed_key(self._settings.dlq_topic, stored.id)
        # No expiry: a mark must outlive its dead letter, or a second run would replay it again.
        await _bounded(self._redis.set(key, mark.model_dump_json()))
        return Outcome(stored.id, "replayed", ", ".join(filter(None, [f"to {to}", note])))

    def _unfit(self, stored: StoredLetter) -> str:
        """Why the dead letter cannot be replayed, or "" when it can."""
        source = stored.letter.source
        if source.topic != self._settings.input_topic:  # e.g. a profile record
            return f"it came from {source.topic}, not the input topic {self._settings.input_topic}"
        if stored.letter.raw_omitted:
            return f"its value was too large to copy; it is still at {source.topic}[{source.partition}]"
        if not stored.raw:
            return "it has no value to re-drive (a tombstone)"
        return ""

    async def _mark_of(self, stored: StoredLetter) -> ReplayMark | None:
        found = await _bounded(self._redis.get(replayed_key(self._settings.dlq_topic, stored.id)))
        if found is None:
            return None
        try:
            mark = ReplayMark.model_validate_json(found)
        except ValidationError:
            return None
        return mark if mark.failed_at == stored.letter.failed_at else None

    def _message(self, stored: StoredLetter) -> CustomerMessage | None:
        try:
            return parse_message(stored.raw, self._settings.max_input_chars)
        except BadInput:
            return None

    async def _has_stored_fallback(self, message: CustomerMessage) -> bool:
        """True when the worker stored a fallback reply for the message: it would answer the
        replayed message with that again (a redelivery is answered from the reply store)."""
        found = await _bounded(self._redis.get(reply_key(message.message_id)))
        try:
            return found is not None and Reply.model_validate_json(found).status == "fallback"
        except ValidationError:
            return False

    async def _drop_fallback(self, message: CustomerMessage) -> None:
        """Forget the fallback reply so the worker answers the message anew.

        The published mark goes first: left without its reply, it would make the worker take its
        next reply for published and skip it after a crash. The message's turns leave the history
        too, or the new prompt would hold the question twice and the fallback text as an answer;
        the worker adds them again with its new reply. Single-key commands only, as on a cluster.
        """
        await _bounded(self._redis.delete(published_key(message.message_id)))
        await _bounded(self._redis.delete(reply_key(message.message_id)))
        history = history_key(message.conversation_id)
        for item in await _bounded(self._redis.lrange(history, 0, -1)):
            # str always, as the client decodes responses; the test tells mypy so.
            if isinstance(item, str) and _turn_of(item) == message.message_id:
                await _bounded(self._redis.lrem(history, 0, item))


@asynccontextmanager
async def replayer(settings: Settings, *, dry_run: bool) -> AsyncIterator[Replayer]:
    """A Replayer on the settings' Redis and input topic; a dry run opens no producer."""
    redis = connect(settings.redis_url.get_secret_value(), 4, cluster=settings.redis_cluster == "on")
    try:
        if dry_run:
            yield Replayer(settings, redis, None)
            return
        options = KafkaSecurity.from_settings(settings).client_options()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", **options)
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await producer.start()
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                partitions = await producer.partitions_for(settings.input_topic)
            yield Replayer(settings, redis, producer, frozenset(partitions))
        finally:
            await stop_client(producer)
    finally:
        await redis.aclose()


def _headers(stored: StoredLetter) -> list[tuple[str, bytes]]:
    """The replay's name, and the dead letter's trace continued by a span of the replay's own."""
    headers = [(REPLAY_HEADER, stored.id.encode())]
    trace = TraceContext.of(stored.headers)
    if trace.parent_id is not None:  # a trace the dead letter carried, not one started here
        headers += trace.headers()
    return headers


def _turn_of(item: str) -> object:
    """The message_id of a history entry, or None when it is not a JSON object."""
    try:
        turn = json.loads(item)
    except ValueError:
        return None
    return turn.get("message_id") if isinstance(turn, dict) else None


async def _bounded(call: Awaitable[T]) -> T:
    async with asyncio.timeout(REDIS_TIMEOUT_S):
        return await call
