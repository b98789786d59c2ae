"""Handoff to a human, end to end: a rule of prompts/handoff.yaml fires, the worker publishes one
handoff record and the handoff reply, sends later messages to the human instead of the LLM, and
answers again once the conversation is released."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.redis_keys import fallback_streak_key, state_key
from devstack.mock_llm.admin import MockAdmin
from devstack.redis_server import EmbeddedRedis
from tests.helpers.cli import invoke
from tests.helpers.kafka import at_least, json_values, produce, read_topic
from tests.helpers.messages import request, user_texts
from tests.helpers.polling import until
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e


async def records(kafka: str, env: dict[str, str], topic: str, count: int) -> list[dict[str, Any]]:
    """The records of `topic` once it has `count` and the workers of `env` have processed everything."""
    return json_values(await read_topic(kafka, topic, until=at_least(count), caught_up=env))


@SEVERAL_PROCESSES
async def test_asking_for_a_human_hands_over_until_the_conversation_is_released(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    inputs, replies, handoffs = (env[f"ENRICHER_{name}_TOPIC"] for name in ("INPUT", "REPLY", "HANDOFF"))
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        await redis.hset("customer:cust-1", mapping={"name": "Ada", "tier": "silver"})
        first = await worker_factory()
        await produce(kafka, inputs, *request("h-1", "c-h", "Where is my order?", customer_id="cust-1"))
        await produce(
            kafka, inputs, *request("h-2", "c-h", "I want to talk to a human", customer_id="cust-1")
        )
        answered = await records(kafka, env, replies, 2)
        assert [(r["message_id"], r["status"]) for r in answered] == [("h-1", "ok"), ("h-2", "handoff")]
        handoff = answered[1]
        assert handoff["text"].startswith("Hi Ada,")
        assert "member of our team" in handoff["text"]
        assert handoff["handoff"]["kind"] == "phrase"
        assert await redis.get(state_key("c-h")) == "human"
        [record] = await records(kafka, env, handoffs, 1)
        assert (record["conversation_id"], record["customer_id"], record["message_ids"]) == (
            "c-h",
            "cust-1",
            ["h-2"],
        )
        assert record["reason"] == handoff["handoff"]
        assert record["signals"]["intent"] == "wants_human"
        assert len(await mock_admin.requests()) == 1  # no LLM call for the handoff

        first.kill()  # the state is in Redis: another worker obeys it
        await worker_factory()
        await produce(kafka, inputs, *request("h-3", "c-h", "Hello? Is someone there?", customer_id="cust-1"))
        to_human = await records(kafka, env, handoffs, 2)
        assert {key: to_human[1][key] for key in ("conversation_id", "message_id", "text")} == {
            "conversation_id": "c-h",
            "message_id": "h-3",
            "text": "Hello? Is someone there?",
        }
        # Not answered by the AI: no reply now, and the reply to h-4 below is the next one.
        assert len(await records(kafka, env, replies, 2)) == 2
        assert len(await mock_admin.requests()) == 1

        released = await invoke(env, "handoff", "release", "c-h")
        assert released.exit_code == 0, released.output

        async def given_back() -> bool:
            return not await redis.exists(state_key("c-h"))

        await until(given_back, "the release clears the conversation's state")
        await produce(
            kafka, inputs, *request("h-4", "c-h", "Thanks, one more question", customer_id="cust-1")
        )
        again = await records(kafka, env, replies, 3)
    assert (again[2]["message_id"], again[2]["status"]) == ("h-4", "ok")
    [call] = (await mock_admin.requests())[1:]
    assert (
        user_texts(call)[-1].endswith("Thanks, one more question")
        or "one more question" in user_texts(call)[-1]
    )
    # The human's part of the conversation is in the history the LLM sees.
    assert "Is someone there?" in json.dumps(call["messages"])


async def test_the_fallback_answering_three_times_in_a_row_hands_over(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.script(*({"match": f"attempt {n}", "status": 400} for n in range(3)))
    await worker_factory({"ENRICHER_COALESCE": "off"})
    for n in range(4):
        await produce(
            kafka, env["ENRICHER_INPUT_TOPIC"], *request(f"f-{n}", "c-f", f"attempt {n} at an order")
        )
    answered = await records(kafka, env, env["ENRICHER_REPLY_TOPIC"], 4)
    assert [r["status"] for r in answered] == ["fallback"] * 3 + ["handoff"]
    assert answered[3]["handoff"]["kind"] == "fallbacks"
    [record] = await records(kafka, env, env["ENRICHER_HANDOFF_TOPIC"], 1)
    assert record["message_ids"] == ["f-3"]
    assert len(await mock_admin.requests()) == 3
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        assert await redis.get(fallback_streak_key("c-f")) == "3"


@SEVERAL_PROCESSES
async def test_while_redis_is_down_a_conversation_a_human_holds_stays_theirs(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    inputs, replies, handoffs = (env[f"ENRICHER_{name}_TOPIC"] for name in ("INPUT", "REPLY", "HANDOFF"))
    own = EmbeddedRedis()  # a server of this test's own, as it is killed
    own.start()
    try:
        first = await worker_factory({"REDIS_URL": own.url})
        await produce(kafka, inputs, *request("r-1", "c-r", "I want to talk to a human"))
        [handoff] = await records(kafka, env, replies, 1)
        assert handoff["status"] == "handoff"
        own.kill()

        await produce(kafka, inputs, *request("r-2", "c-r", "Are you still there?"))
        to_human = await records(kafka, env, handoffs, 2)
        assert [record.get("message_id") for record in to_human] == [None, "r-2"]

        # A worker started while Redis is down knows the handoff from the handoff topic alone.
        first.kill()
        await worker_factory({"REDIS_URL": own.url}, ready=False)  # not ready without Redis
        await produce(kafka, inputs, *request("r-3", "c-r", "Hello? Anyone?"))
        to_human = await records(kafka, env, handoffs, 3)
        assert to_human[2]["message_id"] == "r-3"
    finally:
        own.stop()
    assert json_values(await read_topic(kafka, replies)) == [handoff]  # the AI answered nothing
    assert await mock_admin.requests() == []
