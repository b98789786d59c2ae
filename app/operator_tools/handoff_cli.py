"""`enricher handoff release CONV`: give a conversation that a human has back to the AI, through the
control topic, which the workers read."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from app.errors import EXIT_CONFIG, fail, one_line, settings_or_exit
from app.handoff import ControlCommand
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, TopicMissing, stop_client
from app.settings import Settings

handoff_cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Conversations handed to a human: give one back to the AI through ENRICHER_CONTROL_TOPIC.",
)


@handoff_cli.callback()
def handoff() -> None:
    """Commands for conversations handed to a human; configured by the worker's environment."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its connection errors: ours says it once


@handoff_cli.command()
def release(
    conversation: Annotated[str, typer.Argument(metavar="CONV", help="The conversation id, e.g. c-1.")],
) -> None:
    """Give the conversation back to the AI: its next message gets an AI reply again.

    Sends {"command": "release", "conversation_id": CONV} to ENRICHER_CONTROL_TOPIC, keyed by
    CONV, and waits for the broker to take it; a worker then deletes the conversation's handoff
    state. Exits 1 when the broker cannot be reached or the topic does not exist.
    """
    try:
        command = ControlCommand.release(conversation)
    except ValidationError as error:
        fail(f"CONV: {one_line(error, first_only=True).removeprefix('conversation_id: ')}", EXIT_CONFIG)
    settings: Settings = settings_or_exit()
    try:
        where = asyncio.run(send_command(settings, command))
    except (KafkaError, OSError) as error:  # OSError covers TimeoutError, and so TopicMissing
        to = f"{settings.control_topic} on {settings.kafka_bootstrap_servers}"
        fail(f"release of {conversation} not sent to {to}: {str(error) or type(error).__name__}")
    print(f"release of conversation {conversation} sent to {where}; a worker gives it back to the AI")


async def send_command(settings: Settings, command: ControlCommand) -> str:
    """Produce `command` to the control topic, wait for the broker's ack (acks=all), and say where it
    went: `topic[partition]@offset`. Raises KafkaError, TimeoutError or TopicMissing."""
    security = KafkaSecurity.from_settings(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", **security.client_options()
    )
    try:
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            await producer.start()
        # Starting learnt every topic; sending to one that is missing would make a broker that
        # creates topics on first use create it, with its own partition count, unread by workers.
        if not producer.client.cluster.partitions_for_topic(settings.control_topic):
            raise TopicMissing(settings.control_topic)
        sent = producer.send_and_wait(settings.control_topic, command.value(), key=command.key())
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            metadata = await sent
    finally:
        await stop_client(producer)
    return f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"
