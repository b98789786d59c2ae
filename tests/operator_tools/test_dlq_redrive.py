"""A dead letter re-driven to a running worker: a message that got a fallback is answered for real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from tests.helpers.dead_letters import message, run_dlq
from tests.helpers.kafka import at_least, json_values, produce, read_topic

if TYPE_CHECKING:
    from devstack.mock_llm.admin import MockAdmin
    from tests.helpers.workers import WorkerFactory


async def test_a_message_that_got_a_fallback_is_answered_anew_when_replayed(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    tmp_path: Path,
) -> None:
    env = enricher_env
    await worker_factory({"ENRICHER_LLM_TIMEOUT_S": "1", "ENRICHER_LLM_DEADLINE_S": "2"})
    await mock_admin.script(*[{"match": "redrive", "hang": True}] * 10)
    await produce(kafka, env["ENRICHER_INPUT_TOPIC"], "c-r", message("m-r", "c-r", "redrive please"))
    letters = json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(1)))
    assert [letter["error"]["kind"] for letter in letters] == ["llm_unavailable"]
    await mock_admin.reset()  # the LLM is back

    replayed = await run_dlq(env, tmp_path, "replay", "--kind", "llm_unavailable")
    again = await run_dlq(env, tmp_path, "replay")

    assert replayed.returncode == 0, replayed.stderr
    assert "drops the stored fallback reply to m-r" in replayed.stdout
    assert again.stdout.splitlines()[-1].startswith("replayed 0, already replayed 1")
    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(2), caught_up=env)
    )
    assert [reply["status"] for reply in replies] == ["fallback", "ok"]
    fallback, answer = replies
    assert answer["reply_id"] == fallback["reply_id"]
    assert "redrive please" in answer["text"]
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as client:
        assert json.loads(await client.get("reply:m-r"))["status"] == "ok"
        history = [json.loads(item) for item in await client.lrange("conversation:c-r:history", 0, -1)]
    assert [(turn["role"], turn["text"]) for turn in history] == [
        ("customer", "redrive please"),
        ("agent", answer["text"]),
    ]
