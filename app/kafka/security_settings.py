"""The Kafka security settings checked together at start: what the protocol needs, what it does not
use, and PEM files that load; each problem a ValueError naming the variable."""

from __future__ import annotations

import ssl

from app.kafka.security import tls_context
from app.settings import Settings


def check_kafka_security(settings: Settings) -> None:
    """Raise ValueError (`VARIABLE: what is wrong`) for a combination that cannot work."""
    protocol = settings.kafka_security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
    if sasl and settings.kafka_sasl_username is None:
        raise ValueError(f"KAFKA_SASL_USERNAME: required with KAFKA_SECURITY_PROTOCOL={protocol}")
    if sasl and not (settings.kafka_sasl_password and settings.kafka_sasl_password.get_secret_value()):
        raise ValueError(f"KAFKA_SASL_PASSWORD: required with KAFKA_SECURITY_PROTOCOL={protocol}")
    mechanism = settings.kafka_sasl_mechanism if "kafka_sasl_mechanism" in settings.model_fields_set else None
    sasl_only = {
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": settings.kafka_sasl_password,
    }
    tls_only = {
        "KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    unused = ({} if sasl else sasl_only) | ({} if tls else tls_only)
    for variable, value in unused.items():
        # Ignored, it would leave out the authentication or the encryption it asks for.
        if value is not None:
            raise ValueError(f"{variable}: set, but KAFKA_SECURITY_PROTOCOL={protocol} does not use it")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        given, missing = (
            ("CERTFILE", "KEYFILE") if settings.kafka_ssl_keyfile is None else ("KEYFILE", "CERTFILE")
        )
        raise ValueError(f"KAFKA_SSL_{missing}: required with KAFKA_SSL_{given}: mutual TLS needs both")
    if tls:
        _check_tls_files(settings)


def _check_tls_files(settings: Settings) -> None:
    """Load the PEM files now, so that a bad one is a configuration error, not a failed connection."""
    try:
        tls_context(settings.kafka_ssl_cafile, None, None)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"KAFKA_SSL_CAFILE: not a PEM bundle of CA certificates: {error}") from None
    if settings.kafka_ssl_certfile is not None:
        try:
            tls_context(None, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except (ssl.SSLError, OSError, ValueError) as error:
            raise ValueError(
                f"KAFKA_SSL_CERTFILE: not a PEM certificate matching KAFKA_SSL_KEYFILE: {error}"
            ) from None
