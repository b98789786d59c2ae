"""A conversation a human holds: its state in Redis, this worker's own record of it from the topics,
and the control topic's command that gives it back to the AI.

The support team's rules that decide a handoff are in `app.prompts.handoff_rules`.

In Redis: the contract's `conversation:{id}:state` and our count of fallback replies in a row. This
is the one module that sends commands on these two keys. The context store (`app.context`) reads and
writes them in its own round trips, with the commands queued here on its pipelines.

On a Redis Cluster the two keys are in different hash slots (the names have no hash tags), so each
command here names one key.

In memory (`HeldConversations`): the conversations a human holds, as this worker knows them from the
handoff and control topics: what decides while Redis cannot be read (promise 9). Each worker keeps
its own copy (`HandoffFollower` feeds it every handoff, message for the human and release, from
every partition, read without a consumer group and from the beginning: each worker must see every
handoff, not the share of partitions a group would give it; what is kept of them is bounded by the
set, however long the topics are). A handoff and its release are on different topics, so their order is
the records' timestamps: the latest event of a conversation wins, whichever topic was read first.
Like `conversation:{id}:state`, a conversation is held until it is released or nothing happens in it
for `ttl_s`.

The control topic's records (`ControlCommand`) are commands to the workers, e.g. give a conversation
back to the AI. Key: the conversation id. Value: `{"command": "release", "conversation_id": "..."}`;
unknown fields are ignored, as on the input topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict, ValidationError

from app.errors import BadInput, ContextUnavailable, InvalidMessage, one_line
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, POLL_MS, consumer_from_beginning, read_to_end, stop_client
from app.redis_client import FAILURES, OPERATION_TIMEOUT_S, AnyPipeline, RedisClient
from app.redis_keys import fallback_streak_key, state_key
from app.schemas import ForHuman, Handoff, Identifier, json_object
from app.settings import Settings

log = logging.getLogger(__name__)

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


MAX_CONVERSATIONS = 100_000
"""Conversations remembered, the least recently active forgotten first: a few MB at most."""


@dataclass(frozen=True)
class _Event:
    at_s: float
    """When it happened (the record's timestamp), in seconds since the epoch."""
    held: bool


class HeldConversations:
    """Which conversations a human holds; bounded, and `ready` once the topics were read to their end."""

    def __init__(self, ttl_s: float, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._ttl_s = ttl_s
        self._max = max_conversations
        self._latest: OrderedDict[str, _Event] = OrderedDict()
        self.caught_up = asyncio.Event()
        """Set once what the topics held at start has been read."""

    def handed_over(self, conversation_id: str, at_s: float) -> None:
        """A human took the conversation at `at_s`."""
        self._apply(conversation_id, _Event(at_s, held=True))

    def active(self, conversation_id: str, at_s: float) -> None:
        """A message of a held conversation went to the human at `at_s`: it stays held for `ttl_s` more."""
        latest = self._latest.get(conversation_id)
        if latest is not None and latest.held:
            self._apply(conversation_id, _Event(at_s, held=True))

    def released(self, conversation_id: str, at_s: float) -> None:
        """The conversation was given back to the AI at `at_s`."""
        self._apply(conversation_id, _Event(at_s, held=False))

    def holds(self, conversation_id: str, now_s: float) -> bool:
        """True when a human holds it: handed over, not released since, active within `ttl_s`."""
        latest = self._latest.get(conversation_id)
        return latest is not None and latest.held and now_s - latest.at_s < self._ttl_s

    def __len__(self) -> int:
        return len(self._latest)

    def _apply(self, conversation_id: str, event: _Event) -> None:
        latest = self._latest.get(conversation_id)
        if latest is not None and latest.at_s > event.at_s:
            return  # an older event read after a newer one, from the other topic
        self._latest[conversation_id] = event
        self._latest.move_to_end(conversation_id)
        while len(self._latest) > self._max:
            self._latest.popitem(last=False)


class ControlCommand(BaseModel):
    """One command of the control topic; `release` is the only one so far."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    command: Literal["release"]
    conversation_id: Identifier

    @classmethod
    def release(cls, conversation_id: str) -> ControlCommand:
        """The command that gives `conversation_id` back to the AI; ValidationError for a bad id."""
        return cls(command="release", conversation_id=conversation_id)

    def key(self) -> bytes:
        """The record's key: the conversation, so its commands keep their order."""
        return self.conversation_id.encode()

    def value(self) -> bytes:
        """The record's value, as JSON."""
        return self.model_dump_json().encode()


def parse_command(raw: bytes | None) -> ControlCommand:
    """Decode a control record; InvalidJson (not UTF-8 JSON, or no value) or InvalidMessage (not a
    known command, or its fields are wrong), as the dead letter's kind should say."""
    document = json_object(raw)
    try:
        return ControlCommand.model_validate(document)
    except ValidationError as error:
        raise InvalidMessage(one_line(error)) from None


RETRY_S = 1.0  # after the broker failed the reader: read the topics again from their beginning


class HandoffFollower:
    """Keeps `held` current from the handoff and control topics until cancelled."""

    def __init__(self, settings: Settings, held: HeldConversations) -> None:
        self._settings = settings
        self._held = held
        self._topics = (settings.handoff_topic, settings.control_topic)

    async def run(self) -> None:
        """Read the topics to their end (then `held.caught_up` is set), and follow them; on a broker
        failure, start over from their beginning (what was applied is applied again, harmlessly)."""
        while True:
            try:
                await self._follow()
            except Exception as error:  # the broker or a topic missing: held is kept, and retried
                log.warning(
                    "handoff topics not readable; retrying",
                    extra={"error": f"{type(error).__name__}: {error}"},
                )
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        consumer = await consumer_from_beginning(
            self._settings.kafka_bootstrap_servers,
            self._topics,
            security=KafkaSecurity.from_settings(self._settings),
        )
        try:
            self._apply(await read_to_end(consumer))
            self._held.caught_up.set()
            while True:
                async with asyncio.timeout(KAFKA_TIMEOUT_S):
                    batches = await consumer.getmany(timeout_ms=POLL_MS)
                for records in batches.values():
                    self._apply(records)
        finally:
            await stop_client(consumer)

    def _apply(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            at_s = record.timestamp / 1000
            if record.topic == self._settings.control_topic:
                try:
                    self._held.released(parse_command(record.value).conversation_id, at_s)
                except BadInput:
                    continue  # the control agent dead-letters it
            elif record.value is not None:
                self._apply_handoff_record(record.value, at_s)

    def _apply_handoff_record(self, value: bytes, at_s: float) -> None:
        """A handoff record hands the conversation over; a message for the human keeps it held."""
        for model, apply in ((Handoff, self._held.handed_over), (ForHuman, self._held.active)):
            try:
                record = model.model_validate_json(value)
            except ValidationError:
                continue
            apply(record.conversation_id, at_s)
            return
