"""The newest customer messages on the input topic, read without a consumer group, to try a draft on."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from app.errors import BadInput
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, consumer_from_beginning, read_to_end, stop_client
from app.schemas import CustomerMessage, parse_message
from app.settings import Settings


async def recent_messages(settings: Settings, count: int) -> list[CustomerMessage]:
    """The newest `count` records of the input topic that are valid messages, oldest first.

    Each partition is read from `count` records before its end, so the topic's newest `count`
    are among what is read (Tansu's end offsets undercount, which only makes the window longer).
    Records the worker would dead-letter are left out, so fewer may come back. Raises KafkaError,
    TimeoutError, or TopicMissing when the input topic does not exist.
    """
    consumer = await consumer_from_beginning(
        settings.kafka_bootstrap_servers,
        [settings.input_topic],
        security=KafkaSecurity.from_settings(settings),
    )
    try:
        await _seek_back(consumer, count)
        records = await read_to_end(consumer)
    finally:
        await stop_client(consumer)
    newest = sorted(records, key=lambda record: (record.timestamp, record.partition, record.offset))
    messages = []
    for record in newest:
        try:
            messages.append(parse_message(record.value, settings.max_input_chars, record.headers))
        except BadInput:
            continue
    return messages[-count:]


async def _seek_back(consumer: AIOKafkaConsumer, count: int) -> None:
    partitions = sorted(consumer.assignment())
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        starts = await consumer.beginning_offsets(partitions)
    async with asyncio.timeout(KAFKA_TIMEOUT_S):
        ends = await consumer.end_offsets(partitions)
    for partition in partitions:
        consumer.seek(partition, max(starts[partition], ends[partition] - count))
