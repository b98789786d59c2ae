"""Trace context through a real worker: what a traced producer sends, every produced record continues."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.kafka import at_least, rd_produce, read_topic
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INPUT_SPAN = "00f067aa0ba902b7"
TRACED = [("traceparent", f"00-{TRACE_ID}-{INPUT_SPAN}-01".encode()), ("tracestate", b"shop=1")]
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def message(message_id: str, text: str = "Hi") -> bytes:
    return json.dumps({"message_id": message_id, "conversation_id": f"c-{message_id}", "text": text}).encode()


def about(record: ConsumerRecord, message_id: str) -> bool:
    """Whether a reply, chunk or dead letter is for `message_id`."""
    value: dict[str, Any] = json.loads(record.value)
    raw = base64.b64decode(value.get("raw_b64", ""))
    return value.get("message_id") == message_id or f'"{message_id}"'.encode() in raw


def traces(records: Iterable[ConsumerRecord], message_id: str) -> list[tuple[str, str, bytes | None]]:
    """(trace id, span id, tracestate) of each record for `message_id`."""
    found = []
    for record in records:
        if about(record, message_id):
            headers = dict(record.headers or ())
            parsed = TRACEPARENT.match(headers["traceparent"].decode())
            assert parsed is not None, headers
            found.append((parsed[1], parsed[2], headers.get("tracestate")))
    return found


async def test_reply_chunks_dead_letter_and_logs_continue_the_input_trace(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    worker = await worker_factory()
    await mock_admin.script({"match": "retried", "status": 500})  # a warning logged in its trace
    await rd_produce(
        kafka,
        env["ENRICHER_INPUT_TOPIC"],
        [
            ("c-traced", message("traced", "retried please"), 0, TRACED),
            ("c-untraced", message("untraced"), 0, []),
            ("c-bad", b'{"message_id": "bad-traced"', 0, TRACED),
        ],
    )
    replies = await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(2), caught_up=env)
    chunks = await read_topic(kafka, env["ENRICHER_STREAM_TOPIC"], until=at_least(2), caught_up=env)
    letters = await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(1), caught_up=env)

    continued = traces(replies, "traced") + traces(chunks, "traced") + traces(letters, "bad-traced")
    assert len(continued) >= 3
    assert {(trace_id, state) for trace_id, _, state in continued} == {(TRACE_ID, b"shop=1")}
    spans = [span for _, span, _ in continued]
    assert len(set(spans)) == len(spans)
    assert INPUT_SPAN not in spans

    started = traces(replies, "untraced") + traces(chunks, "untraced")
    assert len({trace_id for trace_id, _, _ in started}) == 1
    assert started[0][0] not in (TRACE_ID, "0" * 32)
    assert {state for _, _, state in started} == {None}

    log_path = worker.process.log_path
    assert log_path is not None
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    retried = [line for line in lines if line.get("message_id") == "traced"]
    dead_lettered = [line for line in lines if line["msg"] == "message dead-lettered"]
    assert retried, "no log line of the traced message's work"
    assert {line.get("trace_id") for line in retried + dead_lettered} == {TRACE_ID}
