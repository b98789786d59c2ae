"""Giving a conversation back to the AI on real services: `enricher handoff release` onto the control
topic, a worker's control agent deleting the conversation's state in Redis, bad commands dead-lettered."""

from __future__ import annotations

import base64
import json

import pytest
import redis.asyncio as aioredis

from app.handoff import HUMAN
from app.redis_keys import fallback_streak_key, state_key
from tests.helpers.cli import invoke
from tests.helpers.kafka import at_least, json_values, produce_many, read_topic
from tests.helpers.polling import until
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e

RELEASE_GUARD_S = 20.0
"""Against a release that never comes, under the test's 30 s."""


async def test_release_gives_the_conversation_back_and_bad_commands_are_dead_lettered(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory
) -> None:
    env = enricher_env
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        for conversation in ("c-1", "c-2"):
            await redis.set(state_key(conversation), HUMAN)
            await redis.set(fallback_streak_key(conversation), 3)
        worker = await worker_factory()
        # Keyed alike, so all three share a partition: the release comes after the bad records.
        bad = [b"{not json", json.dumps({"command": "hand_over", "conversation_id": "c-2"}).encode()]
        await produce_many(kafka, env["ENRICHER_CONTROL_TOPIC"], [("c-1", value) for value in bad])
        released = await invoke(env, "handoff", "release", "c-1")
        assert released.exit_code == 0, released.output

        async def released_c1() -> bool:
            return not await redis.exists(state_key("c-1"))

        await until(released_c1, "c-1 released", RELEASE_GUARD_S)

        assert await redis.exists(fallback_streak_key("c-1")) == 0
        assert await redis.get(state_key("c-2")) == HUMAN
        assert await redis.get(fallback_streak_key("c-2")) == "3"

    def release_log() -> list[dict[str, object]]:  # written once the keys are deleted
        lines = worker.process.log_tail(200).splitlines()
        logged = [json.loads(line) for line in lines if line.startswith("{")]
        return [entry for entry in logged if entry.get("conversation_id") == "c-1"]

    async def release_logged() -> bool:
        return bool(release_log())

    await until(release_logged, "the release logged")
    given_back = {"msg": "conversation given back to the AI", "conversation_id": "c-1"}
    assert given_back.items() <= release_log()[0].items()

    # The release came after both bad records on their partition: their letters are all there is.
    letters = json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(2)))
    assert [letter["error"]["kind"] for letter in letters] == ["invalid_json", "invalid_message"]
    assert [base64.b64decode(letter["raw_b64"]) for letter in letters] == bad
    assert {letter["source"]["topic"] for letter in letters} == {env["ENRICHER_CONTROL_TOPIC"]}
    assert letters[0]["error"]["detail"].startswith("control: not JSON: ")
    assert "command" in letters[1]["error"]["detail"]
