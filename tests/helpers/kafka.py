"""Test helpers around the real broker: produce records, read whole topics without a consumer group.

Tansu's end offsets undercount, so nothing here asks for them: topics are read from the
beginning of every partition up to their high-water marks (app/kafka/topic_reader.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import confluent_kafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka.topic_reader import KAFKA_TIMEOUT_S, POLL_MS, consumer_from_beginning, read_to_end, stop_client
from app.polling import NotYet, poll

Key = str | bytes | None
Predicate = Callable[[Sequence[ConsumerRecord]], bool]
COMMITTED_POLL_S = 0.1


def _bytes(value: Key) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


async def produce(bootstrap: str, topic: str, key: Key, value: bytes | None) -> None:
    """Produce one record (acks=all) and wait until the broker has it."""
    await produce_many(bootstrap, topic, [(key, value)])


async def produce_many(bootstrap: str, topic: str, records: Iterable[tuple[Key, bytes | None]]) -> None:
    """Produce records in the given order (per key, order is kept) and wait for all of them."""
    async with producing(bootstrap) as producer:
        await send_all(producer, topic, records)


@asynccontextmanager
async def producing(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer (acks=all) for many sends, stopped when the block ends."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await producer.start()
        yield producer
    finally:
        await stop_client(producer)


async def send_all(
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[tuple[Key, bytes | None]],
    partition: int | None = None,
) -> None:
    """Send records in the given order (to `partition`, or by key) and wait until the broker has
    them all."""
    futures = [
        await producer.send(topic, value, key=_bytes(key), partition=partition) for key, value in records
    ]
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        await asyncio.gather(*futures)


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Predicate | None = None,
    timeout_s: float = 30.0,
    caught_up: Mapping[str, str] | None = None,
) -> list[ConsumerRecord]:
    """All records of `topic`, read from the beginning of every partition without a group.

    With `until`, first reads until `until(records)` holds, and raises TimeoutError if it does
    not within `timeout_s`. With `caught_up` (a worker's environment), then waits until the
    worker has processed everything sent to it (`worker_caught_up`). Last, it reads the topic to
    its end: a repeat or a record a test expects not to see would be there by then, so no quiet
    period is waited for.
    """
    if until is not None:
        await _read_until(bootstrap, topic, until, timeout_s)
    if caught_up is not None:
        await worker_caught_up(bootstrap, caught_up, timeout_s)
    # A consumer of its own: one that has fetched before holds high-water marks from before the
    # wait, and read_to_end would stop at them.
    return await _read_to_end(bootstrap, topic, timeout_s)


async def _read_until(bootstrap: str, topic: str, until: Predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    consumer = await consumer_from_beginning(bootstrap, [topic], wait_s=timeout_s)
    records: list[ConsumerRecord] = []
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met by {len(records)} records in {timeout_s} s")
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                batches = await consumer.getmany(timeout_ms=POLL_MS)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await stop_client(consumer)


async def _read_to_end(bootstrap: str, topic: str, wait_s: float) -> list[ConsumerRecord]:
    """Every record `topic` has now, by partition and offset (waiting up to `wait_s` for it to exist)."""
    consumer = await consumer_from_beginning(bootstrap, [topic], wait_s=wait_s)
    try:
        return await read_to_end(consumer)
    finally:
        await stop_client(consumer)


async def _ends(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    """The end offset of each partition of `topics`, read from its high-water mark (Tansu's
    ListOffsets answers the last batch's base offset + 1, see app/kafka/topic_reader.py)."""
    consumer = await consumer_from_beginning(bootstrap, topics, wait_s=KAFKA_TIMEOUT_S)
    try:
        await read_to_end(consumer)
        return {partition: await consumer.position(partition) for partition in consumer.assignment()}
    finally:
        await stop_client(consumer)


async def worker_caught_up(
    bootstrap: str, env: Mapping[str, str], timeout_s: float = 30.0, topics: Sequence[str] | None = None
) -> None:
    """Wait until the workers of `env` have committed every record now on `topics` (their input
    and orders topics unless given). A worker commits a message only once the broker has
    acknowledged its reply, handoff records and dead letter, and (one broker, one producer
    sending it one request at a time) the chunks streamed before them: from then on the output
    topics hold all of it. A side topic's record is committed once Redis has it."""
    inputs = topics or (env["ENRICHER_INPUT_TOPIC"], env["ENRICHER_ORDERS_TOPIC"])
    ends = {partition: end for partition, end in (await _ends(bootstrap, inputs)).items() if end > 0}
    group = env["ENRICHER_APP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        await admin.start()

    async def committed() -> None:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            offsets = await admin.list_consumer_group_offsets(group, partitions=list(ends))
        behind = {
            f"{partition.topic}[{partition.partition}]": (offsets[partition].offset, end)
            for partition, end in ends.items()
            if partition not in offsets or offsets[partition].offset < end
        }
        if behind:
            raise NotYet(f"group {group} has committed (offset, end): {behind}")

    try:
        await poll(committed, timeout_s, COMMITTED_POLL_S)
    finally:
        await admin.close()


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


def _rd_read(bootstrap: str, topic: str, count: int, timeout_s: float) -> list[Any]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}", "log_level": 3}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=KAFKA_TIMEOUT_S)
        numbers = sorted(metadata.topics[topic].partitions)
        consumer.assign([confluent_kafka.TopicPartition(topic, n, 0) for n in numbers])
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                raise RuntimeError(f"librdkafka: {message.error()}")
            records.append(message)
        if len(records) < count:
            raise TimeoutError(f"{topic}: {len(records)} of {count} records in {timeout_s} s")
        return records
    finally:
        consumer.close()


async def rd_read(bootstrap: str, topic: str, count: int, timeout_s: float = 60.0) -> list[Any]:
    """The first `count` records of `topic` (all partitions, from the start) read by librdkafka."""
    return await asyncio.to_thread(_rd_read, bootstrap, topic, count, timeout_s)
