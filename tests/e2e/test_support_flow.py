"""The whole path on real services: messages in, replies out, context from Redis, DLQ, retries."""

from __future__ import annotations

import base64
import json
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.kafka import (
    answered,
    answering_at_least,
    at_least,
    json_values,
    produce,
    produce_many,
    read_topic,
    worker_caught_up,
)
from tests.helpers.messages import request, requests_for, streamed_text
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e


async def test_hundred_messages_in_order_with_profile_and_history(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(latency_ms=20, jitter_ms=20)
    profiles = [
        (f"cust-{n}", json.dumps({"name": f"Customer{n}", "tier": "gold"}).encode()) for n in range(10)
    ]
    await produce_many(kafka, env["ENRICHER_PROFILE_TOPIC"], profiles)
    await produce(kafka, env["ENRICHER_PROFILE_TOPIC"], "cust-gone", b'{"name": "Gone"}')
    await produce(kafka, env["ENRICHER_PROFILE_TOPIC"], "cust-gone", None)
    # Turn by turn, one reply per message, so that each prompt's history can be checked.
    await worker_factory({"ENRICHER_COALESCE": "off"})

    # Every profile record, on whichever partition, is in Redis (or gone from it) once committed.
    await worker_caught_up(kafka, env, topics=[env["ENRICHER_PROFILE_TOPIC"]])
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        assert await redis.hgetall("customer:cust-3") == {"name": "Customer3", "tier": "gold"}
        assert await redis.hget("customer:cust-9", "name") == "Customer9"
        assert await redis.exists("customer:cust-gone") == 0

    inputs = [
        request(
            f"m-{turn}-{conv}",
            f"conv-{conv}",
            f"Question {turn} from conversation {conv}",
            customer_id=f"cust-{conv}",
        )
        for turn in range(10)
        for conv in range(10)
    ]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    records = await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(100), caught_up=env)
    replies = json_values(records)

    assert len(replies) == 100
    assert len({r["message_id"] for r in replies}) == 100
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for reply in replies:
        by_conversation[reply["conversation_id"]].append(int(reply["message_id"].split("-")[1]))
        assert reply["status"] == "ok"
        assert set(reply) >= {
            "reply_id",
            "message_id",
            "conversation_id",
            "customer_id",
            "text",
            "status",
            "model",
            "prompt",
            "usage",
            "latency_ms",
            "created_at",
        }
        assert (
            reply["usage"]["total_tokens"]
            == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]
        )
        assert reply["usage"]["prompt_tokens"] > 0
        conv = reply["conversation_id"].split("-")[1]
        assert reply["text"].startswith(f"Hi Customer{conv},"), reply["text"]
    assert all(turns == list(range(10)) for turns in by_conversation.values()), by_conversation
    assert all(
        record.key.decode() == value["conversation_id"]
        for record, value in zip(records, replies, strict=True)
    )

    chat_requests = await mock_admin.requests()
    first = requests_for(chat_requests, "Question 0 from conversation 4")
    second = requests_for(chat_requests, "Question 1 from conversation 4")
    assert len(first) == len(second) == 1
    assert "name: Customer4" in first[0]["messages"][0]["content"]
    earlier = second[0]["messages"][1:-1]
    assert [m["role"] for m in earlier] == ["user", "assistant"]
    assert earlier[0]["content"] == "Question 0 from conversation 4"
    assert earlier[1]["content"].startswith("Hi Customer4,")

    # The stream topic: the mock's six pieces a reply, 2 ms apart, come as fewer records that
    # several pieces share (flushed at most every 50 ms), which a reader puts together again;
    # a record a piece, and the closing one, would be 700.
    chunks = json_values(await read_topic(kafka, env["ENRICHER_STREAM_TOPIC"], until=at_least(100)))
    for reply in replies:
        assert streamed_text(chunks, reply["message_id"]) == reply["text"]
    assert len(chunks) <= 100 * 5

    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        stored = json.loads(await redis.get("reply:m-3-2"))
        assert stored["text"] == next(r["text"] for r in replies if r["message_id"] == "m-3-2")
        history = [json.loads(item) for item in await redis.lrange("conversation:conv-2:history", 0, -1)]
        assert len(history) == 20
        assert [turn["role"] for turn in history[:2]] == ["customer", "agent"]
        assert history[-1]["message_id"] == "m-9-2"
        assert await redis.ttl("conversation:conv-2:history") > 0
        assert await redis.ttl("reply:m-3-2") > 0

    chunks = json_values(await read_topic(kafka, env["ENRICHER_STREAM_TOPIC"], until=at_least(100)))
    of_one = [c for c in chunks if c["message_id"] == "m-0-0"]
    assert [c["seq"] for c in of_one] == list(range(len(of_one)))
    assert of_one[-1]["done"] is True
    reply_text = next(r["text"] for r in replies if r["message_id"] == "m-0-0")
    assert "".join(c["delta"] for c in of_one) == reply_text


async def test_bad_inputs_go_to_the_dlq_and_neighbours_are_answered(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory
) -> None:
    env = enricher_env
    await worker_factory({"ENRICHER_MAX_INPUT_CHARS": "100"})
    bad: list[tuple[bytes, str]] = [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe not utf-8", "invalid_json"),
        (b"[1, 2, 3]", "invalid_message"),
        (json.dumps({"conversation_id": "c", "text": "no id"}).encode(), "invalid_message"),
        (
            json.dumps({"message_id": "", "conversation_id": "c", "text": "empty id"}).encode(),
            "invalid_message",
        ),
        (json.dumps({"message_id": "b6", "conversation_id": "c", "text": 42}).encode(), "invalid_message"),
        (json.dumps({"message_id": "b7", "conversation_id": "c", "text": ""}).encode(), "invalid_message"),
        (json.dumps({"message_id": "b8", "conversation_id": "c", "text": "x" * 101}).encode(), "too_large"),
    ]
    records: list[tuple[str, bytes]] = []
    for index, (raw, _) in enumerate(bad):
        records.append(request(f"good-{index}", "c", f"valid message {index}"))
        records.append(("c", raw))
    records.append(request("good-last", "c", "valid message last"))
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], records)

    letters = json_values(
        await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(len(bad)), caught_up=env)
    )
    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=answering_at_least(len(bad) + 1))
    )

    assert answered(replies) == [f"good-{i}" for i in range(len(bad))] + ["good-last"]
    assert len(letters) == len(bad)
    for letter, (raw, kind) in zip(letters, bad, strict=True):
        assert letter["error"]["kind"] == kind
        assert letter["error"]["detail"]
        assert base64.b64decode(letter["raw_b64"]) == raw
        assert letter["source"]["topic"] == env["ENRICHER_INPUT_TOPIC"]
        assert letter["failed_at"].endswith("Z")
    offsets = [letter["source"]["offset"] for letter in letters]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)


async def test_llm_failures_retry_fall_back_or_dead_letter(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await worker_factory({"ENRICHER_LLM_TIMEOUT_S": "1", "ENRICHER_LLM_DEADLINE_S": "4"})
    await mock_admin.script(
        {"match": "flaky", "status": 500},
        {"match": "flaky", "status": 500},
        {"match": "limited", "status": 429, "retry_after": 1},
        {"match": "refused", "status": 400},
        {"match": "cut", "break_stream": True},
        *[{"match": "down", "hang": True}] * 10,
    )
    await produce_many(
        kafka,
        env["ENRICHER_INPUT_TOPIC"],
        [
            request("flaky-1", "c-flaky", "flaky please"),
            request("limited-1", "c-limited", "limited please"),
            request("refused-1", "c-refused", "refused please"),
            request("down-1", "c-down", "down please", customer_id="cust-x"),
            request("cut-1", "c-cut", "cut please"),
        ],
    )
    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(5), caught_up=env)
    )
    letters = json_values(
        await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(2), caught_up=env)
    )

    by_id = {r["message_id"]: r for r in replies}
    assert sorted(by_id) == ["cut-1", "down-1", "flaky-1", "limited-1", "refused-1"]
    assert len(replies) == 5
    assert by_id["cut-1"]["status"] == "ok"
    assert by_id["flaky-1"]["status"] == "ok"
    assert by_id["limited-1"]["status"] == "ok"
    assert by_id["down-1"]["status"] == "fallback"
    assert by_id["down-1"]["prompt"]["name"] == "fallback"
    assert (by_id["refused-1"]["status"], by_id["refused-1"]["prompt"]["name"]) == ("fallback", "fallback")
    assert {letter["error"]["kind"] for letter in letters} == {"llm_rejected", "llm_unavailable"}

    chat_requests = await mock_admin.requests()
    assert len(requests_for(chat_requests, "flaky please")) == 3
    limited = requests_for(chat_requests, "limited please")
    assert len(limited) == 2
    assert limited[1]["received_at"] - limited[0]["received_at"] >= 1.0
    assert len(requests_for(chat_requests, "refused please")) == 1
    assert len(requests_for(chat_requests, "cut please")) == 2

    # A chat page following the stream ends with each reply's text: the cut attempt's pieces
    # and the fallback's predecessors are voided by `reset`.
    chunks = json_values(
        await read_topic(kafka, env["ENRICHER_STREAM_TOPIC"], until=at_least(5), caught_up=env)
    )
    assert any(chunk["reset"] for chunk in chunks if chunk["message_id"] == "cut-1")
    for message_id in ("cut-1", "down-1", "flaky-1", "refused-1"):
        assert streamed_text(chunks, message_id) == by_id[message_id]["text"]
