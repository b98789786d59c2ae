"""Test helpers around the real broker: produce records, read whole topics without a consumer group.

Tansu's end offsets undercount, so nothing here asks for them: topics are read from the
beginning of every partition (app/kafka/topic_reader.py) and the records are counted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import confluent_kafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from app.kafka.topic_reader import KAFKA_TIMEOUT_S, consumer_from_beginning, stop_client

Key = str | bytes | None
Predicate = Callable[[Sequence[ConsumerRecord]], bool]


def _bytes(value: Key) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


async def produce(bootstrap: str, topic: str, key: Key, value: bytes | None) -> None:
    """Produce one record (acks=all) and wait until the broker has it."""
    await produce_many(bootstrap, topic, [(key, value)])


async def produce_many(bootstrap: str, topic: str, records: Iterable[tuple[Key, bytes | None]]) -> None:
    """Produce records in the given order (per key, order is kept) and wait for all of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await producer.start()
        futures = [await producer.send(topic, value, key=_bytes(key)) for key, value in records]
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await asyncio.gather(*futures)
    finally:
        await stop_client(producer)


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Predicate | None = None,
    timeout_s: float = 30.0,
    settle_s: float = 0.0,
) -> list[ConsumerRecord]:
    """All records of `topic`, read from the beginning of every partition without a group.

    With `until`, reads until `until(records)` holds (then `settle_s` longer, to catch any
    extra records) and raises TimeoutError if it does not within `timeout_s`. Without it,
    returns what arrived once nothing new came for a second.
    """
    deadline = time.monotonic() + timeout_s
    consumer = await consumer_from_beginning(bootstrap, [topic], wait_s=timeout_s)
    records: list[ConsumerRecord] = []
    try:
        quiet_since = time.monotonic()
        done_at: float | None = None
        while True:
            now = time.monotonic()
            if done_at is None and until is not None and until(records):
                done_at = now
            if done_at is not None:
                if now >= done_at + settle_s:
                    return records
            elif until is None:
                if now - quiet_since >= 1.0 or now > deadline:
                    return records
            elif now > deadline:
                raise TimeoutError(f"{topic}: condition not met by {len(records)} records in {timeout_s} s")
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
                quiet_since = time.monotonic()
    finally:
        await stop_client(consumer)


async def partitions_of(bootstrap: str, topic: str) -> set[int]:
    """The partition numbers of an existing `topic` (empty if it does not exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await consumer.start()
        return set(consumer.partitions_for_topic(topic) or ())
    finally:
        await stop_client(consumer)


def at_least(count: int) -> Predicate:
    """A `read_topic` condition: `count` records or more."""
    return lambda records: len(records) >= count


def answered(replies: Iterable[dict[str, Any]]) -> list[str]:
    """The messages replies answer, in publication order: each reply's `answers` (its own
    message, or several answered together), repeats included."""
    return [message_id for reply in replies for message_id in reply["answers"]]


def answering_at_least(count: int) -> Predicate:
    """A `read_topic` condition on the reply topic: replies answering `count` messages or more."""
    return lambda records: len(answered(json_values(records))) >= count


def json_values(records: Iterable[ConsumerRecord]) -> list[Any]:
    """The records' values decoded as JSON (tombstones skipped)."""
    return [json.loads(record.value) for record in records if record.value is not None]


RdRecord = tuple[Key, bytes | None, int, list[tuple[str, bytes]]]
"""key, value, partition, headers: one record as librdkafka produces it."""


def _rd_produce(bootstrap: str, topic: str, records: Sequence[RdRecord], compression: str) -> None:
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": compression,
            "message.max.bytes": 16 * 1024 * 1024,
            "enable.idempotence": False,  # Tansu has no InitProducerId
            "log_level": 3,
        }
    )
    failures: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    for key, value, partition, headers in records:
        producer.produce(
            topic, value=value, key=_bytes(key), partition=partition, headers=headers, on_delivery=delivered
        )
    left = producer.flush(KAFKA_TIMEOUT_S)
    if left or failures:
        raise RuntimeError(f"librdkafka: {left} records not delivered, failures {failures}")


async def rd_produce(
    bootstrap: str, topic: str, records: Sequence[RdRecord], compression: str = "none"
) -> None:
    """Produce through librdkafka (confluent-kafka), as most existing producers do, and wait for acks."""
    await asyncio.to_thread(_rd_produce, bootstrap, topic, records, compression)


def _rd_read(bootstrap: str, topic: str, count: int, timeout_s: float, settle_s: float) -> list[Any]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}", "log_level": 3}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=KAFKA_TIMEOUT_S)
        numbers = sorted(metadata.topics[topic].partitions)
        consumer.assign([confluent_kafka.TopicPartition(topic, n, 0) for n in numbers])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        settled_at = float("inf")
        while time.monotonic() < min(deadline, settled_at):
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                raise RuntimeError(f"librdkafka: {message.error()}")
            records.append(message)
            if len(records) == count:
                settled_at = time.monotonic() + settle_s
        if len(records) < count:
            raise TimeoutError(f"{topic}: {len(records)} of {count} records in {timeout_s} s")
        return records
    finally:
        consumer.close()


async def rd_read(
    bootstrap: str, topic: str, count: int, timeout_s: float = 60.0, settle_s: float = 1.0
) -> list[Any]:
    """The records of `topic` (all partitions, from the start) read by librdkafka: at least
    `count` of them, and whatever else arrives within `settle_s` after the count is reached."""
    return await asyncio.to_thread(_rd_read, bootstrap, topic, count, timeout_s, settle_s)
