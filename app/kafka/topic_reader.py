"""Reading whole topics without a consumer group: every partition, from its beginning.

Tansu's end offsets (ListOffsets) undercount, so readers either count records or, as
`read_to_end` does, also trust the high-water mark of the fetch responses, which Tansu gets right.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from app.kafka.security import PLAINTEXT, KafkaSecurity
from app.polling import NotYet, poll

KAFKA_TIMEOUT_S = 15.0
TOPIC_POLL_S = 0.2
FETCH_MAX_WAIT_MS = 500  # aiokafka's default
IDLE_S = 2.0
POLL_MS = 200


class TopicMissing(NotYet):
    """A topic to read does not exist (yet)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist")
        self.topic = topic


async def consumer_from_beginning(
    bootstrap: str,
    topics: Sequence[str],
    *,
    security: KafkaSecurity = PLAINTEXT,
    wait_s: float = 0.0,
    fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
) -> AIOKafkaConsumer:
    """A started consumer without a group, assigned every partition of `topics` at offset 0.

    Waits up to `wait_s` for the topics to exist, then raises TopicMissing naming one that
    does not. A consumer learns every topic's metadata when it starts, so each try starts a
    new one: asking for one topic by name would auto-create it on Tansu with a default
    partition count.
    """

    async def started() -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
            **security.client_options(),
        )
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await consumer.start()
            partitions: list[TopicPartition] = []
            for topic in topics:
                numbers = consumer.partitions_for_topic(topic)
                if not numbers:
                    raise TopicMissing(topic)
                partitions += [TopicPartition(topic, number) for number in sorted(numbers)]
            consumer.assign(partitions)
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await consumer.seek_to_beginning(*partitions)
        except BaseException:
            await stop_client(consumer)
            raise
        return consumer

    return await poll(started, wait_s, TOPIC_POLL_S)


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Stop an aiokafka consumer or producer within KAFKA_TIMEOUT_S.

    The stop runs as a task of its own: a consumer without a group cancels a background task of
    its own on stop and awaits it, which raises CancelledError when that task has not run yet (a
    consumer stopped right after it started); a task created after it runs after it.
    """
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        await asyncio.create_task(client.stop())


async def read_to_end(consumer: AIOKafkaConsumer, idle_s: float = IDLE_S) -> list[ConsumerRecord]:
    """The records of the consumer's assigned partitions, from their positions at least to the end
    each partition had when reading began, ordered by partition and offset.

    A partition's end is the larger of its end offset and the high-water mark of the first fetch
    response for it. On Kafka both are exact. Tansu 0.6 answers ListOffsets with its last batch's
    base offset + 1 (measured: 4 for 10 records on 8 partitions, 14,648 for 14,768 on one), while
    its high-water mark is exact; it happens to send a partition's whole log in one fetch, but a
    reader that stops at the end offsets would depend on that. Reading until nothing comes for a
    while instead would cost that while on every call. When no record comes for `idle_s` before
    every end is reached (a broker that reports an end it does not serve), what was read is returned.
    """
    partitions = sorted(consumer.assignment())
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    unknown = set(partitions)  # no fetch response yet, so no high-water mark
    pending = set(partitions)
    records: list[ConsumerRecord] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < idle_s:
        for partition in list(pending):
            highwater = consumer.highwater(partition)
            if partition in unknown and highwater is not None:
                unknown.discard(partition)
                ends[partition] = max(ends[partition], highwater)
            if partition not in unknown and await consumer.position(partition) >= ends[partition]:
                pending.discard(partition)
        if not pending:
            break
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            batches = await consumer.getmany(*pending, timeout_ms=POLL_MS)
        for batch in batches.values():
            records += batch
            quiet_since = time.monotonic()
    return sorted(records, key=lambda record: (record.partition, record.offset))
