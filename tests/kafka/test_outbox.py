"""Dead letters carry the reason and raw bytes, with credentials cleaned out of the reason."""

from __future__ import annotations

import base64
import json

from app.kafka.outbox import DeadLetters
from app.observability.logs import Redactor
from app.observability.tracing import TraceContext
from app.schemas import SourcePosition


async def test_detail_is_redacted_and_raw_bytes_kept() -> None:
    produced: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def produce(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        produced.append((key, value, headers))

    letters = DeadLetters(produce, Redactor(["hunter2-password"]))
    source = SourcePosition(topic="in", partition=2, offset=9)
    await letters.send(
        "llm_unavailable",
        "HTTP 401: Incorrect API key provided: sk-live-abcdefghijkl; redis://:hunter2-password@cache",
        source,
        b"c-1",
        b'{"raw": true}',
        TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
    )
    [(key, value, headers)] = produced
    letter = json.loads(value)
    assert key == b"c-1"
    assert "sk-live" not in letter["error"]["detail"]
    assert "hunter2" not in letter["error"]["detail"]
    assert base64.b64decode(letter["raw_b64"]) == b'{"raw": true}'
    [(name, traceparent)] = headers
    assert name == "traceparent"
    assert traceparent.startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736-")
