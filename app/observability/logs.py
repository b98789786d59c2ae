"""JSON log lines on stdout, with secrets redacted wherever they would appear."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.observability.redaction import Redactor
from app.settings import Settings

STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
QUIET_LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "aiokafka", "kafka")

_correlation: ContextVar[dict[str, str]] = ContextVar("correlation", default={})  # noqa: B039  # never mutated


def bind(**ids: str) -> None:
    """Add correlation ids (message_id, conversation_id) to every log line of the current task."""
    _correlation.set({**_correlation.get(), **ids})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redact = redactor or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_correlation.get(),
        }
        for name, value in record.__dict__.items():
            if name not in STANDARD_ATTRIBUTES and not name.startswith("_"):
                document[name] = value
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(document, default=str, ensure_ascii=False))


def secrets_of(settings: Settings) -> list[str]:
    """Values that must never be printed."""
    secrets = [settings.redis_url.get_secret_value()]
    if settings.openai_api_key is not None:
        secrets.append(settings.openai_api_key.get_secret_value())
    return secrets


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping: JSON to stdout, chatty HTTP loggers quieted."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": JsonFormatter, "redactor": Redactor(secrets_of(settings))},
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
        },
        "root": {"handlers": ["stdout"], "level": settings.log_level},
        "loggers": {name: {"level": "WARNING"} for name in QUIET_LOGGERS},
    }
