"""`enricher dlq replay` as a child process on the real broker and Redis: at most once, dry runs."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis

from app.operator_tools.dead_letters import REPLAY_HEADER
from app.schemas import Reply, reply_id_for
from tests.helpers.dead_letters import TRACE_ID, TRACEPARENT, dead_letter, message, run_dlq
from tests.helpers.kafka import rd_produce, read_topic


async def test_replay_run_twice_republishes_each_dead_letter_once(
    kafka: str, enricher_env: dict[str, str], tmp_path: Path
) -> None:
    env = enricher_env
    inputs, profiles = env["ENRICHER_INPUT_TOPIC"], env["ENRICHER_PROFILE_TOPIC"]
    valid = message("m-1", "c-1")
    await rd_produce(
        kafka,
        env["ENRICHER_DLQ_TOPIC"],
        [
            dead_letter("internal", valid, source_topic=inputs, partition=3, key="c-1"),
            dead_letter("invalid_json", b"{oops", source_topic=inputs, partition=5, key=None),
            dead_letter("invalid_message", b"[]", source_topic=profiles, partition=1, key="cust-1"),
            dead_letter("invalid_json", None, source_topic=inputs, partition=1, key="c-2"),
        ],
    )

    first = await run_dlq(env, tmp_path, "replay")
    second = await run_dlq(env, tmp_path, "replay")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    lines = first.stdout.splitlines()
    assert lines[-1] == "replayed 2 (3:0 5:0), already replayed 0, skipped 2 (1:0 1:1)"
    assert f"replayed 3:0: to {inputs}[3]@0" in lines
    assert any(line.startswith("skipped 1:0: it came from") for line in lines)
    assert "skipped 1:1: it has no value to re-drive (a tombstone)" in lines
    assert second.stdout.splitlines()[-1] == "replayed 0, already replayed 2 (3:0 5:0), skipped 2 (1:0 1:1)"
    assert "already replayed 3:0: at " in second.stdout

    # Read to the topic's end once the commands have ended: a duplicate would show.
    records = await read_topic(kafka, inputs)
    headers = [dict(record.headers) for record in records]
    replays = sorted(
        (h[REPLAY_HEADER], r.key, r.value, r.partition) for h, r in zip(headers, records, strict=True)
    )
    assert replays == [(b"3:0", b"c-1", valid, 3), (b"5:0", None, b"{oops", 5)]
    assert {h["traceparent"].decode().split("-")[1] for h in headers} == {TRACE_ID}  # the dead letters' trace
    assert {h["traceparent"] for h in headers}.isdisjoint({TRACEPARENT.encode()})  # a span of its own
    assert all(h["tracestate"] == b"vendor=1" for h in headers)
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as client:
        mark = json.loads(await client.get(f"dlq:replayed:{env['ENRICHER_DLQ_TOPIC']}:3:0"))
    assert mark["to"] == f"{inputs}[3]@0"


async def test_a_dry_run_publishes_nothing_marks_nothing_and_keeps_the_stored_reply(
    kafka: str, enricher_env: dict[str, str], tmp_path: Path
) -> None:
    env = enricher_env
    inputs = env["ENRICHER_INPUT_TOPIC"]
    fallback = Reply.model_validate(
        {
            "reply_id": reply_id_for("m-9"),
            "message_id": "m-9",
            "conversation_id": "c-9",
            "text": "Sorry, we cannot answer right now.",
            "status": "fallback",
            "model": "gpt-4o-mini",
            "prompt": {"name": "fallback", "version": "abc"},
            "usage": {},
            "latency_ms": 1,
            "created_at": "2026-01-01T00:00:00.000Z",
        }
    )
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as client:
        await client.set("reply:m-9", fallback.model_dump_json())
        await client.set("reply:m-9:published", 1)
    await rd_produce(
        kafka,
        env["ENRICHER_DLQ_TOPIC"],
        [dead_letter("llm_unavailable", message("m-9", "c-9"), source_topic=inputs, key="c-9")],
    )

    dry = await run_dlq(env, tmp_path, "replay", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "would replay 0:0: drops the stored fallback reply to m-9",
        "dry run, nothing published or marked: would replay 1 (0:0), already replayed 0, skipped 0",
    ]
    assert await read_topic(kafka, inputs) == []
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as client:
        assert [key async for key in client.scan_iter("dlq:replayed:*")] == []
        assert await client.exists("reply:m-9", "reply:m-9:published") == 2

        real = await run_dlq(env, tmp_path, "replay")  # the dry run left it to be replayed

        assert real.returncode == 0, real.stderr
        assert "drops the stored fallback reply to m-9" in real.stdout
        assert await client.exists("reply:m-9", "reply:m-9:published") == 0
    replayed = await read_topic(kafka, inputs)
    assert [(r.value, dict(r.headers)[REPLAY_HEADER]) for r in replayed] == [(message("m-9", "c-9"), b"0:0")]
