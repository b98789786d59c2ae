"""JSON log lines: one object per line, correlation ids, secrets redacted."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re

import pytest
from pydantic import ValidationError

from app.observability.logs import ConsoleFormatter, JsonFormatter, Redactor, bind, logging_config
from app.settings import Settings


def capture(formatter: JsonFormatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, stream


def test_secrets_are_redacted_by_value_and_by_shape() -> None:
    logger, stream = capture(JsonFormatter(Redactor(["s3cr3t-redis-pass"])))
    logger.info(
        "key %s url %s auth %s",
        "sk-proj-abcdefghijklmnop",
        "redis://user:s3cr3t-redis-pass@host:6379/0",
        "Bearer abcdefghijklmnop",
        extra={"detail": "sk-proj-abcdefghijklmnop"},
    )
    line = stream.getvalue()
    assert "abcdefghijklmnop" not in line
    assert "s3cr3t" not in line
    document = json.loads(line)
    assert document["level"] == "info"
    assert document["detail"] == "[redacted]"


async def test_correlation_ids_follow_the_task() -> None:
    logger, stream = capture(JsonFormatter())

    async def handle(message_id: str) -> None:
        bind(message_id=message_id, conversation_id="c-1")
        await asyncio.sleep(0)
        logger.info("answered")

    await asyncio.gather(handle("m-1"), handle("m-2"))
    logger.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line.get("message_id", "-") for line in lines) == ["-", "m-1", "m-2"]


def test_console_lines_are_for_people_and_redacted_too() -> None:
    logger, stream = capture(ConsoleFormatter(Redactor(["s3cr3t-redis-pass"])))
    bind(message_id="m-7")
    logger.warning("redis at redis://u:s3cr3t-redis-pass@h/0 is down", extra={"operation": "lookup"})
    line = stream.getvalue().strip()
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING test-\d+: redis at .+ is down  .+", line), line
    assert "s3cr3t" not in line
    assert "message_id=m-7" in line
    assert "operation=lookup" in line


def test_the_setting_picks_the_formatter() -> None:
    def formatter(log_format: str) -> object:
        settings = Settings.model_validate(
            {"OPENAI_BASE_URL": "http://127.0.0.1/v1", "ENRICHER_LOG_FORMAT": log_format}
        )
        return logging_config(settings)["formatters"]["lines"]["()"]

    assert (formatter("json"), formatter("console")) == (JsonFormatter, ConsoleFormatter)
    with pytest.raises(ValidationError, match="ENRICHER_LOG_FORMAT"):
        formatter("yaml")
