"""`enricher send`: one customer message onto the input topic, its reply printed when it comes out; or,
with `--order`, one order record onto the orders topic."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from app.errors import one_line
from app.kafka.security import PLAINTEXT, KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, TopicMissing, consumer_from_beginning, stop_client
from app.kafka.topics import TopicNames
from app.schemas import CustomerMessage, DeadLetter, Order, Reply, ReplyChunk, rfc3339, utc_now
from app.settings import Settings
from devstack.dev_config import DevState, load_dev_settings


class SendError(Exception):
    """The message was sent but no reply came: timed out, dead-lettered, or no such topic."""


@dataclass(frozen=True)
class Endpoints:
    """Where to send and where to look: the broker, how to connect to it, and the contract topics."""

    bootstrap_servers: str
    topics: TopicNames
    security: KafkaSecurity = PLAINTEXT

    @classmethod
    def from_settings(cls, settings: Settings) -> Endpoints:
        """The endpoints the settings name."""
        security = KafkaSecurity.from_settings(settings)
        return cls(settings.kafka_bootstrap_servers, TopicNames.of(settings), security)

    @classmethod
    def from_state(cls, state: DevState, security: KafkaSecurity) -> Endpoints:
        """The endpoints of a running `enricher dev` whose broker takes `security`."""
        return cls(state.kafka_bootstrap_servers, state.topics, security)


def resolve_endpoints() -> Endpoints:
    """A running `enricher dev`'s endpoints (its state file), else the environment's settings.

    The state file holds no credentials: a broker `enricher dev` did not start itself is
    reached with the environment's security settings, as dev's worker reaches it.
    Raises SettingsError when the environment is malformed.
    """
    state = DevState.load()
    if state is None:
        return Endpoints.from_settings(load_dev_settings())
    if "broker" in state.embedded:
        return Endpoints.from_state(state, PLAINTEXT)
    return Endpoints.from_state(state, KafkaSecurity.from_settings(load_dev_settings()))


async def send_and_wait(
    endpoints: Endpoints,
    message: CustomerMessage,
    timeout_s: float,
    on_chunk: Callable[[ReplyChunk], None] | None = None,
) -> Reply:
    """Produce `message` (keyed by conversation) and return its reply; chunks go to `on_chunk`.

    Reads the reply, stream and DLQ topics from their beginning without a consumer group and
    filters by message_id (end offsets cannot be trusted on Tansu). Raises SendError when a
    dead letter for the message shows up or nothing arrives within `timeout_s`.
    """
    topics = endpoints.topics
    try:
        consumer = await consumer_from_beginning(
            endpoints.bootstrap_servers,
            (topics.reply, topics.stream, topics.dlq),
            security=endpoints.security,
        )
    except TopicMissing as missing:
        raise SendError(f"{missing}: is the worker (or enricher dev) running?") from None
    try:
        await _produce(endpoints, message)
        deadline = time.monotonic() + timeout_s
        # Reads every record until the deadline, not a retry of one attempt: no tenacity here.
        while (left := deadline - time.monotonic()) > 0:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                batches = await consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for partition, records in batches.items():
                for record in records:
                    reply = _match(endpoints, partition.topic, record.value, message.message_id, on_chunk)
                    if reply is not None:
                        return reply
    finally:
        await stop_client(consumer)
    raise SendError(f"no reply to message {message.message_id} within {timeout_s:.0f} s")


async def _produce(endpoints: Endpoints, message: CustomerMessage) -> None:
    value = message.model_dump_json(exclude_none=True).encode()
    await produce_record(endpoints, endpoints.topics.input, message.conversation_id, value)


async def produce_record(endpoints: Endpoints, topic: str, key: str, value: bytes) -> None:
    """One record onto `topic`, acknowledged by every replica (`acks=all`)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=endpoints.bootstrap_servers, acks="all", **endpoints.security.client_options()
    )
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await producer.start()
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await stop_client(producer)


def order_now(
    order_id: str,
    customer_id: str,
    status: str,
    items: Sequence[str],
    carrier: str | None = None,
    tracking_number: str | None = None,
) -> Order:
    """An order placed and updated now, one of each item named; ValidationError when it is no order."""
    now = utc_now()
    lines = [{"sku": f"SKU-{n}", "name": name, "qty": 1} for n, name in enumerate(items, 1)]
    document = {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": status,
        "items": lines,
        "placed_at": now,
        "updated_at": now,
        "carrier": carrier,
        "tracking_number": tracking_number,
    }
    return Order.model_validate(document)


def run_send_order(endpoints: Endpoints, build: Callable[[], Order]) -> int:
    """Publish the order `build()` makes to the orders topic (key: its customer); the exit code."""
    try:
        order = build()
    except ValidationError as error:
        print(f"enricher send: {one_line(error, first_only=True)}", file=sys.stderr)
        return 2
    topic = endpoints.topics.orders
    value = json.dumps(order.as_record()).encode()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        asyncio.run(produce_record(endpoints, topic, order.customer_id, value))
    except (KafkaError, OSError) as error:
        print(
            f"enricher send: {error or type(error).__name__}: is the broker (or enricher dev) running?",
            file=sys.stderr,
        )
        return 1
    print(
        f"order {order.order_id} ({order.status}) of {order.customer_id} sent to {topic}",
        f"on {endpoints.bootstrap_servers}",
    )
    return 0


def _match(
    endpoints: Endpoints,
    topic: str,
    value: bytes | None,
    message_id: str,
    on_chunk: Callable[[ReplyChunk], None] | None,
) -> Reply | None:
    """The reply if `value` is ours; calls `on_chunk` for our chunks; raises on our dead letter."""
    if value is None:
        return None
    try:
        document = json.loads(value)
        if topic == endpoints.topics.dlq:
            dead = DeadLetter.model_validate(document)
            if _message_id_of(dead.raw_b64) == message_id:
                raise SendError(f"dead-lettered: {dead.error.kind}: {dead.error.detail}")
        elif not isinstance(document, dict) or document.get("message_id") != message_id:
            return None
        elif topic == endpoints.topics.reply:
            return Reply.model_validate(document)
        elif on_chunk is not None:
            on_chunk(ReplyChunk.model_validate(document))
    except (ValueError, ValidationError):
        return None  # someone else's malformed record is none of our business
    return None


def _message_id_of(raw_b64: str) -> str | None:
    try:
        document = json.loads(base64.b64decode(raw_b64))
    except (binascii.Error, ValueError):
        return None
    return document.get("message_id") if isinstance(document, dict) else None


def run_send(
    endpoints: Endpoints, text: str, conversation_id: str, customer_id: str | None, timeout_s: float
) -> int:
    """Send one message, print the streamed text, the reply and a status line; the exit code."""
    try:
        message = CustomerMessage(
            message_id=f"m-{uuid.uuid4()}",
            conversation_id=conversation_id,
            text=text,
            customer_id=customer_id,
            sent_at=utc_now(),
        )
    except ValidationError as error:
        print(f"enricher send: {one_line(error, first_only=True)}", file=sys.stderr)
        return 2
    streamed: list[str] = []

    def show_chunk(chunk: ReplyChunk) -> None:
        streamed.append(chunk.delta)
        print(chunk.delta, end="", flush=True)

    where = f"{endpoints.topics.input} on {endpoints.bootstrap_servers}"
    print(f"sending {message.message_id} to {where} at {rfc3339(utc_now())}", flush=True)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its connection errors, once is enough
    try:
        reply = asyncio.run(send_and_wait(endpoints, message, timeout_s, show_chunk))
    except KafkaError as error:
        hint = "is the broker (or enricher dev) running?"
        print(f"enricher send: {error}: {hint}", file=sys.stderr, flush=True)
        return 1
    except (SendError, OSError) as error:  # OSError covers TimeoutError
        print("\n" if streamed else "", end="")
        print(f"enricher send: {str(error) or type(error).__name__}", file=sys.stderr, flush=True)
        return 1
    shown = "".join(streamed)
    if shown and reply.text.startswith(shown):
        print(reply.text[len(shown) :])  # the chunks still on their way
    else:
        print(("\n" if shown else "") + reply.text)
    prompt = f"{reply.prompt.name}@{reply.prompt.version[:12]}"
    print(
        f"[{reply.status} | {reply.model} | prompt {prompt} | {reply.latency_ms} ms | "
        f"{reply.usage.total_tokens} tokens | reply {reply.reply_id}]"
    )
    return 0
