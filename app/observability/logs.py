"""Log lines on stdout, JSON or for people, with secrets redacted wherever they would appear; and
the redaction itself, which keeps secrets out of logs, dead letters and replies: known values
and key-shaped text."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import pythonjsonlogger.json
from pythonjsonlogger.core import RESERVED_ATTRS

from app.settings import Settings

RECORD_ATTRIBUTES = frozenset(RESERVED_ATTRS)  # what is not an extra field, for both formats
RENAMED = {"asctime": "ts", "levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"}
QUIET_LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "aiokafka", "kafka")
REDACTED = "[redacted]"
# Named so that a report (the output guard's dead letter) can say what it found without the value.
SECRET_SHAPES: Mapping[str, re.Pattern[str]] = {
    "an API key (sk-...)": re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    "a password in a URL": re.compile(r"(?<=://)[^/@\s:]*:[^/@\s]+(?=@)"),
    "a bearer token": re.compile(r"(?i)(?<=bearer )[A-Za-z0-9_\-.]{8,}"),
}
SECRET_PATTERNS = tuple(SECRET_SHAPES.values())


class Redactor:
    """Replaces known secret values and secret-looking patterns in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text


_correlation: ContextVar[dict[str, str]] = ContextVar("correlation", default={})  # noqa: B039  # never mutated


def bind(**ids: str) -> None:
    """Add correlation ids (message_id, conversation_id) to every log line of the current task."""
    _correlation.set({**_correlation.get(), **ids})


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line: time, level, logger, message, correlation ids, extra fields,
    exception (python-json-logger), with secrets redacted from the whole line."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields=RENAMED,
            json_default=str,
            json_ensure_ascii=False,
        )
        self._redact = redactor or Redactor(())

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["level"] = str(log_data["level"]).lower()
        return log_data | _correlation.get()

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


class ConsoleFormatter(logging.Formatter):
    """One line for people: time, level, logger, message, then correlation ids and extra fields."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
        self._redact = redactor or Redactor(())

    def format(self, record: logging.LogRecord) -> str:
        extra = {
            name: value
            for name, value in record.__dict__.items()
            if name not in RECORD_ATTRIBUTES and not name.startswith("_")
        }
        line = super().format(record)
        fields = " ".join(f"{name}={value}" for name, value in (_correlation.get() | extra).items())
        return self._redact(f"{line}  {fields}" if fields else line)


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "console": ConsoleFormatter}


def secrets_of(settings: Settings) -> list[str]:
    """Values that must never be printed."""
    secrets = [settings.redis_url.get_secret_value()]
    if settings.openai_api_key is not None:
        secrets.append(settings.openai_api_key.get_secret_value())
    if settings.kafka_sasl_password is not None:
        secrets.append(settings.kafka_sasl_password.get_secret_value())
    return secrets + list(settings.llm_header_values.values())


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping: JSON to stdout, chatty HTTP loggers quieted."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "lines": {"()": FORMATTERS[settings.log_format], "redactor": Redactor(secrets_of(settings))},
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "lines",
                "stream": "ext://sys.stdout",
            },
        },
        "root": {"handlers": ["stdout"], "level": settings.log_level},
        "loggers": {name: {"level": "WARNING"} for name in QUIET_LOGGERS},
    }
