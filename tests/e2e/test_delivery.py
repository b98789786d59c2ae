"""Delivery promises under concurrency, crashes, drains, scale-out and a stalled LLM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.devtools.mock_llm.admin import MockAdmin
from app.worker import running_jobs
from tests.helpers.kafka import answered, at_least, json_values, produce_many, read_topic
from tests.helpers.workers import Worker, WorkerFactory

pytestmark = pytest.mark.e2e


def request(message_id: str, conversation_id: str, text: str) -> tuple[str, bytes]:
    document = {"message_id": message_id, "conversation_id": conversation_id, "text": text}
    return conversation_id, json.dumps(document).encode()


def every_message_answered(message_ids: set[str]) -> Any:
    def check(records: list[Any]) -> bool:
        return message_ids <= set(answered(json_values(records)))

    return check


async def replies_to_all(
    kafka: str, topic: str, inputs: list[tuple[str, bytes]], timeout_s: float, settle_s: float = 0.0
) -> list[dict[str, Any]]:
    """The replies on `topic` once every input has one (then `settle_s` longer, for repeats)."""
    ids = {json.loads(value)["message_id"] for _, value in inputs}
    until = every_message_answered(ids)
    return json_values(await read_topic(kafka, topic, until=until, timeout_s=timeout_s, settle_s=settle_s))


def assert_consistent_duplicates(replies: list[dict[str, Any]]) -> None:
    """Any repeat of a reply to a message carries the same reply_id and text."""
    first: dict[str, dict[str, Any]] = {}
    for reply in replies:
        for message_id in reply["answers"]:
            seen = first.setdefault(message_id, reply)
            assert (reply["reply_id"], reply["text"]) == (seen["reply_id"], seen["text"])


def assert_in_input_order(replies: list[dict[str, Any]]) -> None:
    """Per conversation, the first reply answering each message comes in input (turn) order."""
    turns: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for reply in replies:
        for message_id in reply["answers"]:
            if message_id not in seen:
                seen.add(message_id)
                turns[reply["conversation_id"]].append(int(message_id.rsplit("-", 1)[1]))
    for conversation, order in turns.items():
        assert order == sorted(order), (conversation, order)


def calls_per_text(chat_requests: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for chat_request in chat_requests:
        last_user = [m["content"] for m in chat_request["messages"] if m["role"] == "user"][-1]
        match = re.search(r"<customer_message>\s*(.*?)\s*</customer_message>", last_user, re.DOTALL)
        counts[match.group(1) if match else last_user] += 1
    return counts


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tp = TopicPartition(topic, partition)
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return meta.offset if meta is not None else -1


def wait_for_exit(worker: Worker, timeout_s: float) -> int | None:
    deadline = time.monotonic() + timeout_s
    while worker.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker.process.poll()


async def metric(worker: Worker, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{worker.web_url}/metrics")).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


async def test_many_calls_in_flight_keep_each_conversation_in_order(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(latency_ms=400, jitter_ms=200)
    await worker_factory({"ENRICHER_COALESCE": "off"})  # a call for every message: 500 calls
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t} of c{c}") for t in range(10) for c in range(50)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=90, settle_s=1)
    assert sorted(answered(replies)) == sorted(json.loads(value)["message_id"] for _, value in inputs)
    assert_in_input_order(replies)
    assert (await mock_admin.stats())["max_in_flight"] >= 32


async def test_sigkill_with_a_slow_early_message_loses_nothing_repeats_nothing_and_calls_once(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    topic, group = env["ENRICHER_INPUT_TOPIC"], env["ENRICHER_APP_ID"]
    await mock_admin.script({"match": "slow one", "hold": True})
    first = await worker_factory()
    # All on partition 0: the slow message first, finished ones after it.
    inputs = [request("slow-0", "c-slow", "slow one")]
    inputs += [request(f"fast{n}-0", f"c-fast{n}", f"fast {n}") for n in range(20)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for key, value in inputs:
            await producer.send_and_wait(topic, value, key=key.encode(), partition=0)
    finally:
        await producer.stop()

    fast_ids = {f"fast{n}-0" for n in range(20)}
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=every_message_answered(fast_ids), timeout_s=30)
    for _ in range(5):  # several commit intervals pass while the slow one is held
        assert await committed_offset(kafka, group, topic, 0) <= 0
        await asyncio.sleep(0.3)
    first.kill()
    await mock_admin.release()

    await worker_factory()
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60, settle_s=2)
    assert_consistent_duplicates(replies)
    assert len(answered(replies)) == len(inputs), (
        "a redelivered message whose reply was published is not repeated"
    )
    calls = calls_per_text(await mock_admin.requests())
    assert all(calls[f"fast {n}"] == 1 for n in range(20)), calls
    assert calls["slow one"] == 2
    assert await committed_offset(kafka, group, topic, 0) == len(inputs)


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
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60, settle_s=2)
    assert len(answered(replies)) == len(inputs), "a clean drain leaves nothing to repeat"
    assert_in_input_order(replies)


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
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(60), timeout_s=30)
    answered_by_first = await metric(first, 'enricher_messages_total{outcome="ok"}')
    answered_by_second = await metric(second, 'enricher_messages_total{outcome="ok"}')
    assert answered_by_first > 0
    assert answered_by_second > 0
    first.kill()

    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=90, settle_s=1)
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
    samples = []
    for _ in range(20):
        samples.append(await metric(worker, "enricher_buffered_events"))
        await asyncio.sleep(0.25)
    assert max(samples) == 50
    assert samples[-1] == 50
    stats = await mock_admin.stats()
    assert stats["in_flight"] == 8
    worker.kill()  # its calls hang until their timeout: a drain would wait out the whole grace


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
    await worker_factory({"ENRICHER_MAX_IN_FLIGHT": "8"})  # joining the group starts a rebalance

    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=120, settle_s=2)
    assert_consistent_duplicates(replies)
    assert_in_input_order(replies)
    assert "queued events handed back" in first.process.log_path.read_text()


async def test_an_llm_outage_pauses_the_worker_instead_of_flooding_the_dlq(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    in_flight = 4
    worker = await worker_factory(
        {
            "ENRICHER_MAX_IN_FLIGHT": str(in_flight),
            "ENRICHER_LLM_TIMEOUT_S": "1",
            "ENRICHER_LLM_DEADLINE_S": "2",
        }
    )
    await mock_admin.config(error_rate=1.0)
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t}") for t in range(6) for c in range(10)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)

    # Three deadlines of outage: without the breaker, three waves of fallbacks.
    await asyncio.sleep(6)
    async with httpx.AsyncClient(timeout=5) as client:
        readiness = await client.get(f"{worker.web_url}/readyz")
    assert readiness.status_code == 503
    assert readiness.json()["reasons"]["llm"].startswith("failing, new messages wait: HTTP 500")
    assert await metric(worker, "enricher_llm_circuit_open") == 1
    during = json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"]))

    await mock_admin.config(error_rate=0.0)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60)
    letters = json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"]))

    fallbacks = [r for r in replies if r["status"] == "fallback"]
    assert len(answered(replies)) == len(inputs)
    assert {r["status"] for r in during} == {"fallback"}  # nothing but fallbacks while it was down
    assert set(answered(during)) <= set(answered(fallbacks))  # a probe may still be running into its deadline
    # Those running when it opened, and a probe every few seconds; without the breaker every
    # deadline of the outage would send another round of running_jobs to the fallback.
    assert 1 <= len(fallbacks) <= running_jobs(in_flight) + 4
    # One dead letter for each message a fallback answered, so each can be re-driven.
    assert sorted(letter["error"]["kind"] for letter in letters) == ["llm_unavailable"] * len(
        answered(fallbacks)
    )
    assert_in_input_order(replies)
    assert await metric(worker, "enricher_llm_circuit_open") == 0


async def test_a_429_storm_slows_the_worker_without_opening_the_breaker(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    worker = await worker_factory({"ENRICHER_MAX_IN_FLIGHT": "8", "ENRICHER_LLM_DEADLINE_S": "60"})
    await mock_admin.config(rate_limit_rate=1.0, retry_after_s=0.2)
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t}") for t in range(3) for c in range(10)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)

    await asyncio.sleep(4)
    async with httpx.AsyncClient(timeout=5) as client:
        readiness = await client.get(f"{worker.web_url}/readyz")
    refused = await metric(worker, 'enricher_llm_rate_limited_total{model="gpt-4o-mini"}')
    open_during = await metric(worker, "enricher_llm_circuit_open")
    limit_during = await metric(worker, "enricher_llm_concurrency_limit")

    await mock_admin.config(rate_limit_rate=0.0)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60)

    assert refused >= 10
    assert open_during == 0
    assert readiness.status_code == 200  # slowed down, not down
    assert limit_during <= 2  # cut at each round of refusals, from 8
    assert {r["status"] for r in replies} == {"ok"}
    assert len(answered(replies)) == len(inputs)
    assert_in_input_order(replies)
