"""Load for the worker and what comes back: the workload, one batching producer, one group-less reader."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.kafka.topic_reader import KAFKA_TIMEOUT_S, consumer_from_beginning, stop_client
from bench.checker import Keyed

LINGER_MS = 5  # batches a flat-out burst, adds at most 5 ms to a paced message
FETCH_WAIT_MS = 20  # bounds how late the reader can see a reply that is already in the topic
POLL_S = 0.05


@dataclass(frozen=True)
class Outgoing:
    """One customer message of the workload."""

    conversation_id: str
    message_id: str
    value: bytes


TextOf = Callable[[int, int], str]
"""The customer's text for (conversation, turn)."""


def standard_text(conversation: int, turn: int) -> str:
    """The standard load's message: an order that has not arrived."""
    return f"Turn {turn}: my order #{10_000 + conversation} has not arrived yet, where is it?"


def workload(
    prefix: str,
    messages: int,
    conversations: int,
    new_wordings: bool = False,
    text_of: TextOf = standard_text,
) -> list[Outgoing]:
    """`messages` messages over `conversations` conversations, interleaved turn by turn.

    Message i is turn i // conversations of conversation i % conversations, like a live stream where
    every conversation is active at once; the turn number is in the text and in `metadata.seq`.
    The texts are `text_of(conversation, turn)`: the standard ones differ only in their numbers,
    unless `new_wordings`: then each also ends with a made-up word of its own, so that no two read
    alike to the embedded models.
    """
    plan = []
    for index in range(messages):
        conversation, turn = index % conversations, index // conversations
        conversation_id = f"{prefix}-c{conversation}"
        text = text_of(conversation, turn)
        document = {
            "message_id": f"{prefix}-c{conversation}-t{turn}",
            "conversation_id": conversation_id,
            "customer_id": f"cust-{conversation % 50}",
            "text": f"{text} {made_up_word(index)}" if new_wordings else text,
            "metadata": {"seq": turn, "bench": prefix},
        }
        plan.append(Outgoing(conversation_id, str(document["message_id"]), json.dumps(document).encode()))
    return plan


def made_up_word(number: int) -> str:
    """A word of letters that spells `number` (`ba`, `bb`, ...), one per number."""
    letters = "bcdfghjklmnpqrstvwxz"
    word = ""
    while True:
        number, digit = divmod(number, len(letters))
        word = letters[digit] + word
        if not number:
            return "a" + word


def bursts(prefix: str, messages: int, at_once: int, burst: int) -> list[Outgoing]:
    """`messages` messages in bursts of `burst` per conversation, `at_once` conversations at a time.

    Each wave of `at_once` conversations sends its bursts turn by turn, interleaved, like customers
    who each type a few lines quickly; then the next wave of new conversations does the same.
    """
    wave = at_once * burst
    return [
        outgoing
        for start in range(0, messages, wave)
        for outgoing in workload(f"{prefix}-w{start // wave}", min(wave, messages - start), at_once)
    ]


class Sender:
    """One aiokafka producer (acks=all, linger, batching); records when each message was handed to it."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS, max_batch_size=256 * 1024
        )
        self.sent_at: dict[str, float] = {}

    async def send(self, plan: Sequence[Outgoing], rate_per_s: float | None = None) -> None:
        """Produce `plan` in order, as fast as possible or paced at `rate_per_s`; wait for the acks."""
        started = time.monotonic()
        futures = []
        for index, message in enumerate(plan):
            if rate_per_s is not None:
                delay = started + index / rate_per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.sent_at[message.message_id] = time.monotonic()
            futures.append(
                await self._producer.send(self._topic, message.value, key=message.conversation_id.encode())
            )
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await asyncio.gather(*futures)

    async def __aenter__(self) -> Self:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await self._producer.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await stop_client(self._producer)


@dataclass(frozen=True)
class Received:
    """One record as the reader saw it, with the monotonic time it arrived."""

    partition: int
    offset: int
    value: bytes
    at: float


class TopicReader:
    """Reads every partition of an existing topic from the beginning, without a group, in the background.

    Counts records instead of asking for end offsets (Tansu's undercount).
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self.records: list[Received] = []
        self.covered = 0
        """Messages the records so far answer: one each, or a reply's `answers`."""
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._consumer = await consumer_from_beginning(
            self._bootstrap, [self._topic], fetch_max_wait_ms=FETCH_WAIT_MS
        )
        self._task = asyncio.create_task(self._collect(self._consumer), name=f"reader:{self._topic}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await stop_client(self._consumer)

    async def _collect(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=int(POLL_S * 1000))
            now = time.monotonic()
            for batch in batches.values():
                self.records.extend(Received(r.partition, r.offset, r.value, now) for r in batch)
                self.covered += sum(len(_answers(json.loads(r.value))) for r in batch)

    async def wait_for(self, count: int, timeout_s: float) -> bool:
        """Wait until records covering `count` messages have arrived (a reply covers each message
        it answers); False when `timeout_s` passed first."""
        # Hand-written, not tenacity: a time-out is an answer (False) here, not an error.
        deadline = time.monotonic() + timeout_s
        while self.covered < count:
            if self._task is not None and self._task.done():
                self._task.result()  # the reader failed: raise its error
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True

    async def wait_for_each(self, message_ids: set[str], timeout_s: float) -> bool:
        """Wait until a record for each of `message_ids` has arrived; False when `timeout_s` passed first."""
        deadline = time.monotonic() + timeout_s
        while not message_ids <= {message_id for (_, message_id), _ in self.decoded()}:
            if not await self.wait_for(self.covered + 1, deadline - time.monotonic()):
                return False
        return True

    def decoded(self) -> list[tuple[Keyed, float]]:
        """(conversation_id, message_id) and arrival time of each message a record answers (its
        own, or each of a reply's `answers` in order), in (partition, offset) order."""
        ordered = sorted(self.records, key=lambda record: (record.partition, record.offset))
        result: list[tuple[Keyed, float]] = []
        for record in ordered:
            document = json.loads(record.value)
            conversation_id = str(document["conversation_id"])
            result.extend(((conversation_id, message_id), record.at) for message_id in _answers(document))
        return result


def _answers(document: dict[str, object]) -> list[str]:
    """The messages a record stands for: a reply's `answers`, or its own message."""
    answers = document.get("answers")
    if isinstance(answers, list) and answers:
        return [str(answer) for answer in answers]
    return [str(document["message_id"])]
