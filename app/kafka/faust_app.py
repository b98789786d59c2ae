"""Builds the faust App and the contract's topics from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from app.kafka import internals as kafka_transport
from app.kafka.security import KafkaSecurity
from app.kafka.topics import TopicNames
from app.settings import Settings

HEARTBEAT_INTERVAL_S = 1.0
COMMIT_INTERVAL_S = 0.2
PRODUCER_LINGER_S = 0.005  # a few ms of batching: fewer produce requests for the CPU and the broker
PRODUCER_TIMEOUT_S = 30.0  # faust's default of 20 minutes would hold a partition that long


@dataclass(frozen=True)
class Topics:
    """The topics one worker reads and writes."""

    requests: faust.TopicT
    replies: faust.TopicT
    chunks: faust.TopicT
    dead_letters: faust.TopicT
    profiles: faust.TopicT
    handoffs: faust.TopicT
    control: faust.TopicT
    orders: faust.TopicT


def broker_urls(bootstrap_servers: str, scheme: str = "kafka") -> list[str]:
    """`host:port,host:port` as faust broker URLs."""
    return [f"{scheme}://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip()]


def compression_type(settings: Settings) -> str | None:
    """The producer's codec as aiokafka names it (None: uncompressed)."""
    codec = settings.producer_compression
    return None if codec == "none" else codec


def build_app(settings: Settings) -> faust.App:
    """A faust App with raw bytes on the wire (we parse ourselves) and at-least-once commits."""
    return faust.App(
        settings.app_id,
        broker=broker_urls(settings.kafka_bootstrap_servers),
        broker_consumer=broker_urls(settings.kafka_bootstrap_servers, kafka_transport.SCHEME),
        broker_credentials=KafkaSecurity.from_settings(settings).broker_credentials(),
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=COMMIT_INTERVAL_S,
        broker_heartbeat_interval=min(HEARTBEAT_INTERVAL_S, settings.session_timeout_s / 3),
        broker_session_timeout=settings.session_timeout_s,
        # Static membership: a restarted worker with the same id takes its partitions back
        # without a rebalance; unset, a stopping worker leaves the group at once.
        consumer_group_instance_id=settings.group_instance_id,
        broker_rebalance_timeout=settings.llm_deadline_s + 30,
        stream_buffer_maxsize=max(settings.max_buffered, 64),
        topic_partitions=settings.input_partitions,
        topic_allow_declare=True,
        producer_acks=-1,
        producer_linger=PRODUCER_LINGER_S,
        producer_compression_type=compression_type(settings),
        producer_request_timeout=PRODUCER_TIMEOUT_S,
        TableManager=kafka_transport.TablelessManager,
        web_enabled=True,
        web_port=settings.web_port,
        web_bind="0.0.0.0",
        web_in_thread=False,
        autodiscover=False,
    )


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    """The contract's topics on `app`, as raw-bytes faust topics."""

    names = TopicNames.of(settings)
    partitions = names.partitions(settings.input_partitions)

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, partitions=partitions[name])

    return Topics(
        requests=topic(names.input),
        replies=topic(names.reply),
        chunks=topic(names.stream),
        dead_letters=topic(names.dlq),
        profiles=topic(names.profile),
        handoffs=topic(names.handoff),
        control=topic(names.control),
        orders=topic(names.orders),
    )
