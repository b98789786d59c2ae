"""The one group-less topic reader: waits for topics, reads every partition to its end, creates none."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition

from app.kafka import topic_reader
from app.kafka.topic_reader import TopicMissing, consumer_from_beginning, read_to_end
from devstack.broker import create_topics
from tests.helpers.kafka import partitions_of, produce, produce_many


async def test_waits_for_the_topic_and_reads_every_partition_from_the_start(
    kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked = asyncio.Event()

    class Missing(TopicMissing):
        """The reader's TopicMissing, which also says that the reader has looked."""

        def __init__(self, topic: str) -> None:
            super().__init__(topic)
            looked.set()

    monkeypatch.setattr(topic_reader, "TopicMissing", Missing)
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    reading = asyncio.create_task(consumer_from_beginning(kafka, [topic], wait_s=20))
    async with asyncio.timeout(20):
        await looked.wait()  # it found no such topic
    assert not reading.done()  # and keeps looking
    await create_topics(kafka, {topic: 3})
    await produce(kafka, topic, "k", b"first")

    consumer = await reading
    try:
        assert consumer.assignment() == {TopicPartition(topic, n) for n in range(3)}
        batches = await consumer.getmany(timeout_ms=5000)
        assert [record.value for batch in batches.values() for record in batch] == [b"first"]
    finally:
        await consumer.stop()


async def test_names_a_missing_topic_at_once_without_creating_it(kafka: str) -> None:
    present, missing = f"reader-{uuid.uuid4().hex[:8]}", f"missing-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka, {present: 1})
    with pytest.raises(TopicMissing, match=f"topic {missing} does not exist") as caught:
        await consumer_from_beginning(kafka, [present, missing])
    assert caught.value.topic == missing
    assert await partitions_of(kafka, missing) == set()


async def test_reads_to_the_end_of_every_partition_and_stops_there(kafka: str) -> None:
    full, empty = f"reader-{uuid.uuid4().hex[:8]}", f"reader-{uuid.uuid4().hex[:8]}"
    await create_topics(kafka, {full: 2, empty: 3})
    # Small records, many to a batch: Tansu's end offsets count a partition's last batch as one.
    values = [f"v{n}".encode() for n in range(2000)]
    await produce_many(kafka, full, [(f"k{n % 13}", value) for n, value in enumerate(values)])

    for topic, expected in ((full, values), (empty, [])):
        consumer = await consumer_from_beginning(kafka, [topic])
        try:
            # An idle time no test waits out: whatever returns stopped at the end.
            async with asyncio.timeout(20):
                records = await read_to_end(consumer, idle_s=3600)
        finally:
            await consumer.stop()
        assert sorted(record.value for record in records) == sorted(expected)
        assert [(r.partition, r.offset) for r in records] == sorted((r.partition, r.offset) for r in records)
