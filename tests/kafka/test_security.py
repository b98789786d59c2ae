"""The Kafka clients' security configuration: exactly what aiokafka's clients and faust receive."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from app.kafka.faust_app import build_app
from app.kafka.security import PLAINTEXT, KafkaSecurity
from app.settings import Settings
from tests.helpers.tls import Pki

PASSWORD = "pw-s3cret"


def settings_with(**env: str) -> Settings:
    return Settings.model_validate({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", **env})


def sasl_ssl(mechanism: str, **env: str) -> Settings:
    return settings_with(
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM=mechanism,
        KAFKA_SASL_USERNAME="svc-enricher",
        KAFKA_SASL_PASSWORD=PASSWORD,
        **env,
    )


def ca_names(context: ssl.SSLContext) -> list[str]:
    return [
        value for cert in context.get_ca_certs() for ((key, value),) in cert["subject"] if key == "commonName"
    ]


def test_sasl_ssl_plain(pki: Pki) -> None:
    security = KafkaSecurity.from_settings(sasl_ssl("PLAIN", KAFKA_SSL_CAFILE=str(pki.ca)))
    context = security.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert ca_names(context) == ["test-ca"]
    assert security.client_options() == {
        "security_protocol": "SASL_SSL",
        "ssl_context": context,
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "svc-enricher",
        "sasl_plain_password": PASSWORD,
    }
    credentials = security.broker_credentials()
    assert isinstance(credentials, SASLCredentials)
    assert credentials_to_aiokafka_auth(credentials) == security.client_options()
    assert PASSWORD not in repr(security) + repr(credentials)


def test_sasl_ssl_scram_sha_512_with_the_system_cas() -> None:
    security = KafkaSecurity.from_settings(sasl_ssl("SCRAM-SHA-512"))
    context = security.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert security.client_options() == {
        "security_protocol": "SASL_SSL",
        "ssl_context": context,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-enricher",
        "sasl_plain_password": PASSWORD,
    }
    assert credentials_to_aiokafka_auth(security.broker_credentials()) == security.client_options()


def test_sasl_plaintext_has_no_tls() -> None:
    settings = settings_with(
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        KAFKA_SASL_USERNAME="svc-enricher",
        KAFKA_SASL_PASSWORD=PASSWORD,
    )
    security = KafkaSecurity.from_settings(settings)
    assert security.client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "ssl_context": None,
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc-enricher",
        "sasl_plain_password": PASSWORD,
    }
    assert credentials_to_aiokafka_auth(security.broker_credentials()) == security.client_options()


def test_ssl_with_a_client_certificate(pki: Pki) -> None:
    settings = settings_with(
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(pki.ca),
        KAFKA_SSL_CERTFILE=str(pki.client_cert),
        KAFKA_SSL_KEYFILE=str(pki.client_key),
    )
    security = KafkaSecurity.from_settings(settings)
    context = security.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert ca_names(context) == ["test-ca"]
    assert security.client_options() == {"security_protocol": "SSL", "ssl_context": context}
    credentials = security.broker_credentials()
    assert isinstance(credentials, SSLCredentials)
    assert credentials.context is context
    assert credentials_to_aiokafka_auth(credentials) == security.client_options()


def test_plaintext() -> None:
    security = KafkaSecurity.from_settings(settings_with())
    assert security == PLAINTEXT
    assert security.ssl_context is None
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert security.broker_credentials() is None
    assert credentials_to_aiokafka_auth(None) == security.client_options()


def test_the_faust_app_gets_the_credentials(pki: Pki) -> None:
    app = build_app(sasl_ssl("SCRAM-SHA-256", KAFKA_SSL_CAFILE=str(pki.ca)))
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.username, credentials.password) == ("svc-enricher", PASSWORD)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-256")
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert ca_names(credentials.ssl_context) == ["test-ca"]
    assert build_app(settings_with()).conf.broker_credentials is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_aiokafka_clients_take_the_options(pki: Pki, mechanism: str) -> None:
    settings = sasl_ssl(mechanism, KAFKA_SSL_CAFILE=str(pki.ca))
    options: dict[str, Any] = KafkaSecurity.from_settings(settings).client_options()
    # Each checks its security options as it is built (a SASL mechanism without credentials, an
    # SSL protocol without a context would raise); nothing connects.
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **options)
    await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", **options)
    await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9", **options)
    await admin.close()
