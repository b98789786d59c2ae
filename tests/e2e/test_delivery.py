"""Delivery promises under concurrency, crashes, drains, scale-out and a stalled LLM (provider outages:
test_provider_outages.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time

import pytest
import redis.asyncio as aioredis

from app.redis_keys import published_key
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import (
    ANSWERED,
    assert_consistent_duplicates,
    assert_in_input_order,
    calls_per_text,
    committed_offset,
    every_message_answered,
    metric,
    replies_to_all,
    wait_for_exit,
)
from tests.helpers.kafka import (
    answered,
    at_least,
    json_values,
    produce_many,
    producing,
    rd_produce,
    read_topic,
    send_all,
)
from tests.helpers.messages import request
from tests.helpers.polling import until
from tests.helpers.timeouts import SEVERAL_PROCESSES, UNDER_LOAD
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e


@UNDER_LOAD
async def test_many_calls_in_flight_keep_each_conversation_in_order(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(latency_ms=400, jitter_ms=200)
    await worker_factory({"ENRICHER_COALESCE": "off"})  # a call for every message: 500 calls
    # 50 conversations, each with one call in flight at most: with 40, a loaded machine had 26 at once.
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t} of c{c}") for t in range(10) for c in range(50)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=50, caught_up=env)
    assert sorted(answered(replies)) == sorted(json.loads(value)["message_id"] for _, value in inputs)
    assert_in_input_order(replies)
    assert (await mock_admin.stats())["max_in_flight"] >= 32


@SEVERAL_PROCESSES
async def test_sigkill_with_a_slow_early_message_loses_nothing_repeats_nothing_and_calls_once(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    topic, group = env["ENRICHER_INPUT_TOPIC"], env["ENRICHER_APP_ID"]
    await mock_admin.script({"match": "slow one", "hold": True})
    # Slow, not hung: a fixed first-token deadline keeps the held call in flight until the kill.
    first = await worker_factory({"ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S": "60"})
    # All on partition 0: the slow message first, finished ones after it.
    inputs = [request("slow-0", "c-slow", "slow one")]
    inputs += [request(f"fast{n}-0", f"c-fast{n}", f"fast {n}") for n in range(20)]
    async with producing(kafka) as producer:
        await send_all(producer, topic, inputs, partition=0)

    fast_ids = {f"fast{n}-0" for n in range(20)}
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=every_message_answered(fast_ids), timeout_s=30)
    # A message on partition 1 after the fast ones are answered: once its offset is committed, a
    # commit has come after them, and none may pass the held slow one on partition 0.
    probe = request("probe-1", "c-probe", "fast probe")
    await rd_produce(kafka, topic, [(probe[0], probe[1], 1, [])])

    async def probe_committed() -> bool:
        return await committed_offset(kafka, group, topic, 1) >= 1

    await until(probe_committed, "the probe's offset is committed")
    assert await committed_offset(kafka, group, topic, 0) <= 0
    first.kill()
    await mock_admin.release()

    await worker_factory()
    replies = await replies_to_all(
        kafka, env["ENRICHER_REPLY_TOPIC"], [*inputs, probe], timeout_s=60, caught_up=env
    )
    assert_consistent_duplicates(replies)
    assert len(answered(replies)) == len(inputs) + 1, (
        "a redelivered message whose reply was published is not repeated"
    )
    calls = calls_per_text(await mock_admin.requests())
    assert all(calls[f"fast {n}"] == 1 for n in range(20)), calls
    assert calls["slow one"] == 2
    assert await committed_offset(kafka, group, topic, 0) == len(inputs)


@SEVERAL_PROCESSES
async def test_sigterm_drains_and_the_restart_repeats_nothing(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(latency_ms=300, jitter_ms=100)
    worker = await worker_factory({"ENRICHER_MAX_IN_FLIGHT": "16", "ENRICHER_MAX_BUFFERED": "40"})
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t} of c{c}") for t in range(6) for c in range(40)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(40), timeout_s=30)

    worker.process.signal(signal.SIGTERM)
    started = time.monotonic()
    assert await asyncio.to_thread(wait_for_exit, worker, 20) == 0
    assert time.monotonic() - started < float(env["ENRICHER_SHUTDOWN_GRACE_S"]) + 5
    answered_before = len(json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"])))
    assert answered_before < len(inputs), "the drain test needs work left for the restart"

    await worker_factory({"ENRICHER_MAX_IN_FLIGHT": "16"})
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60, caught_up=env)
    assert len(answered(replies)) == len(inputs), "a clean drain leaves nothing to repeat"
    assert_in_input_order(replies)


@SEVERAL_PROCESSES
async def test_two_workers_share_the_load_and_survive_a_crash(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(latency_ms=200, jitter_ms=100)
    # One reply per message: while a rebalance hands a partition over, both workers may answer
    # the same burst, grouped differently (docs/CONTRACT.md, "Where this repository differs").
    solo = {"ENRICHER_COALESCE": "off"}
    first, second = await asyncio.gather(worker_factory(solo), worker_factory(solo))
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t} of c{c}") for t in range(8) for c in range(60)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)

    async def both_answered() -> bool:
        answered_by = [await metric(worker, ANSWERED, absent=0) for worker in (first, second)]
        return all(count > 0 for count in answered_by)

    await until(both_answered, "both workers answer messages", timeout_s=30)
    first.kill()

    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=90, caught_up=env)
    assert_consistent_duplicates(replies)
    assert_in_input_order(replies)


async def test_a_stalled_llm_holds_the_buffer_at_its_bound(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(hang_rate=1.0)
    worker = await worker_factory({"ENRICHER_MAX_BUFFERED": "50", "ENRICHER_MAX_IN_FLIGHT": "8"})
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t}") for t in range(5) for c in range(200)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)

    async def held_at_the_bound() -> bool:
        calls = (await mock_admin.stats())["in_flight"]
        buffered = await metric(worker, "enricher_buffered_events")
        return calls == 8 and buffered == 50 and await metric(worker, "enricher_records_consumed_total") >= 51

    await until(held_at_the_bound, "8 calls hang, 50 events are buffered and the next is taken")
    # The 51st record taken waits for room; had the bound let it in, the rest would follow.
    assert await metric(worker, "enricher_records_consumed_total") == 51
    assert await metric(worker, "enricher_buffered_events") == 50
    worker.kill()  # its calls hang until their timeout: a drain would wait out the whole grace


@SEVERAL_PROCESSES
async def test_a_rebalance_hands_back_queued_work_and_loses_nothing(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(latency_ms=1000, jitter_ms=0)
    # One reply per message, so that messages queue behind the ones in work (answered together,
    # they would all be in work).
    first = await worker_factory({"ENRICHER_MAX_IN_FLIGHT": "8", "ENRICHER_COALESCE": "off"})
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t} of c{c}") for t in range(8) for c in range(16)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(8), timeout_s=30)
    # Joining the group starts a rebalance. One reply per message here too: while a partition is
    # handed over, both may answer a burst, grouped differently (docs/CONTRACT.md).
    await worker_factory({"ENRICHER_MAX_IN_FLIGHT": "8", "ENRICHER_COALESCE": "off"})

    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=120, caught_up=env)
    assert_consistent_duplicates(replies)
    assert_in_input_order(replies)
    assert "queued events handed back" in first.process.log_path.read_text()


async def test_a_fallback_repeated_before_its_published_mark_writes_its_dead_letter_again(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    dlq, replies_topic = env["ENRICHER_DLQ_TOPIC"], env["ENRICHER_REPLY_TOPIC"]
    await mock_admin.script({"match": "a refused question", "status": 400})
    await worker_factory()
    record = request("fb-1", "c-fb", "a refused question")
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], [record])
    [first] = await replies_to_all(kafka, replies_topic, [record], timeout_s=30)
    assert first["status"] == "fallback"
    [letter] = json_values(await read_topic(kafka, dlq, until=at_least(1), caught_up=env))
    assert letter["error"]["kind"] == "llm_rejected"
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        assert await redis.exists(published_key("fb-1"))  # set after the dead letter's ack
        # What a crash after the reply, before its dead letter, leaves: the reply out, no mark.
        await redis.delete(published_key("fb-1"))
        await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], [record])  # the redelivery
        letters = json_values(await read_topic(kafka, dlq, until=at_least(2), caught_up=env))
        assert [entry["error"] for entry in letters] == [letter["error"]] * 2
        assert base64.b64decode(letters[1]["raw_b64"]) == record[1]
        replies = json_values(await read_topic(kafka, replies_topic, until=at_least(2), caught_up=env))
        assert len(replies) == 2
        assert_consistent_duplicates(replies)

        async def marked() -> bool:
            return bool(await redis.exists(published_key("fb-1")))

        await until(marked, "the repeat is marked published once its records are acknowledged")
    assert calls_per_text(await mock_admin.requests()) == {"a refused question": 1}
