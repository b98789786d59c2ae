"""JSON log lines: one object per line, correlation ids, secrets redacted."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from app.observability.logs import JsonFormatter, bind
from app.observability.redaction import Redactor


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
