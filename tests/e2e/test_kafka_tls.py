"""Kafka over TLS for real: the embedded broker behind stunnel, which requires a client certificate.

Tansu 0.6 speaks PLAINTEXT only (its `--cert` listens in plaintext all the same), so stunnel
terminates TLS in front of it and the broker advertises stunnel's address
(tests/helpers/tls.py). Every client goes through `app/kafka/security.py`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from app.kafka.security import PLAINTEXT, KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, consumer_from_beginning
from app.kafka.topics import TopicNames
from app.schemas import CustomerMessage
from app.settings import Settings
from devstack.broker import create_topics
from devstack.sender import Endpoints, send_and_wait
from tests.helpers.tls import Pki, TlsBroker
from tests.helpers.workers import WorkerFactory, running_workers

pytestmark = pytest.mark.e2e

FAILS_WITHIN_S = 10.0


@pytest.fixture(scope="module")
async def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsBroker]:
    async with TlsBroker(pki, tmp_path_factory.mktemp("tls-broker")) as broker:
        yield broker


def tls_env(broker: TlsBroker, **files: Path) -> dict[str, str]:
    """The variables for mutual TLS to `broker`; `files` replace the CA, certificate or key."""
    pki = broker.pki
    paths = {"ca": pki.ca, "cert": pki.client_cert, "key": pki.client_key} | files
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(paths["ca"]),
        "KAFKA_SSL_CERTFILE": str(paths["cert"]),
        "KAFKA_SSL_KEYFILE": str(paths["key"]),
    }


def security_for(env: dict[str, str]) -> KafkaSecurity:
    return KafkaSecurity.from_settings(
        Settings.model_validate({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", **env})
    )


async def start_and_stop(producer: AIOKafkaProducer) -> None:
    try:
        await producer.start()
    finally:
        await producer.stop()  # a start that failed leaves it open


async def test_a_record_goes_through_tls_and_back(tls_broker: TlsBroker) -> None:
    security = security_for(tls_env(tls_broker))
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    await create_topics(tls_broker.bootstrap_servers, {topic: 2}, security)
    producer = AIOKafkaProducer(
        bootstrap_servers=tls_broker.bootstrap_servers, acks="all", **security.client_options()
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over tls", key=b"k1")
    finally:
        await producer.stop()
    consumer = await consumer_from_beginning(tls_broker.bootstrap_servers, [topic], security=security)
    try:
        batches = await consumer.getmany(timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
    finally:
        await consumer.stop()
    assert [(r.key, r.value) for records in batches.values() for r in records] == [(b"k1", b"over tls")]


async def test_a_wrong_ca_fails_fast_naming_the_certificate_error(
    tls_broker: TlsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    security = security_for(tls_env(tls_broker, ca=tls_broker.pki.other_ca))
    producer = AIOKafkaProducer(bootstrap_servers=tls_broker.bootstrap_servers, **security.client_options())
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, "aiokafka"), pytest.raises(KafkaConnectionError, match="bootstrap"):
        await start_and_stop(producer)
    assert time.monotonic() - started < FAILS_WITHIN_S
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


@pytest.mark.parametrize("client", ["plaintext", "no client certificate"])
async def test_only_tls_with_a_client_certificate_gets_in(tls_broker: TlsBroker, client: str) -> None:
    if client == "plaintext":
        options = PLAINTEXT.client_options()
    else:  # verifies the broker, but lacks the certificate stunnel requires of clients
        options = KafkaSecurity(protocol="SSL", cafile=tls_broker.pki.ca).client_options()
    producer = AIOKafkaProducer(bootstrap_servers=tls_broker.bootstrap_servers, **options)
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await start_and_stop(producer)
    assert time.monotonic() - started < FAILS_WITHIN_S


@pytest.fixture
async def worker_env(service_env: dict[str, str], tls_broker: TlsBroker) -> dict[str, str]:
    """This test's worker environment on the TLS broker, its topics created over TLS."""
    env = service_env | tls_env(tls_broker)
    settings = Settings.model_validate(env)
    partitions = TopicNames.of(settings).partitions(settings.input_partitions)
    await create_topics(tls_broker.bootstrap_servers, partitions, KafkaSecurity.from_settings(settings))
    return env


@pytest.fixture
def worker_factory(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerFactory]:
    """Workers on the TLS broker (named so that a failure report shows their logs)."""
    with running_workers(worker_env, tmp_path) as factory:
        yield factory


async def test_a_worker_answers_over_tls(worker_env: dict[str, str], worker_factory: WorkerFactory) -> None:
    await worker_factory()
    message = CustomerMessage(
        message_id=f"m-{uuid.uuid4()}", conversation_id="c-tls", text="Where is my order?"
    )
    endpoints = Endpoints.from_settings(Settings.model_validate(worker_env))
    reply = await send_and_wait(endpoints, message, timeout_s=30)
    assert (reply.message_id, reply.status) == (message.message_id, "ok")
