"""How every Kafka client of the project connects: TLS and SASL, built from Settings in this one place.

The same configuration goes to aiokafka's clients (`client_options`) and to faust
(`broker_credentials`), which hands its consumer, its producer and the producer's client that
creates topics exactly these options (faust's `credentials_to_aiokafka_auth`).
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT
from pydantic import SecretStr

from app.settings import Settings, tls_context


@dataclass(frozen=True)
class KafkaSecurity:
    """The security protocol and what it needs; the default is PLAINTEXT (no TLS, no SASL)."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    username: str | None = None
    password: SecretStr | None = None
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """The KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_* settings (validated there)."""
        return cls(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )

    @property
    def uses_sasl(self) -> bool:
        """SASL_PLAINTEXT or SASL_SSL."""
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (built once, shared by every client), or None without TLS."""
        if self.protocol not in ("SSL", "SASL_SSL"):
            return None
        return tls_context(self.cafile, self.certfile, self.keyfile)

    @property
    def _password_value(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None or self.uses_sasl:  # the keys faust passes, so both agree
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self._password_value
        return options

    def broker_credentials(self) -> CredentialsT | None:
        """faust's `broker_credentials` setting (None: PLAINTEXT)."""
        if self.uses_sasl:
            return SASLCredentials(
                username=self.username,
                password=self._password_value,
                ssl_context=self.ssl_context,  # faust derives SASL_SSL from its presence
                mechanism=self.sasl_mechanism,
            )
        if self.ssl_context is not None:
            return SSLCredentials(self.ssl_context)
        return None


PLAINTEXT = KafkaSecurity()  # the embedded broker's, and what a client gets when it is given none
