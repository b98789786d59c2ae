"""The one group-less topic reader: waits for topics, reads every partition, never creates a topic."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition

from app.devtools.broker import create_topics
from app.devtools.topic_reader import TopicMissing, consumer_from_beginning
from tests.helpers.kafka import partitions_of, produce


async def test_waits_for_the_topic_and_reads_every_partition_from_the_start(kafka: str) -> None:
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    reading = asyncio.create_task(consumer_from_beginning(kafka, [topic], wait_s=20))
    await asyncio.sleep(0.5)
    assert not reading.done()
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
