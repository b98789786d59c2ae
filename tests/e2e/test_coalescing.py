"""Bursts answered once (ENRICHER_COALESCE): messages that queued behind a reply being made are
answered together by the next reply, which lists them in `answers`, also across a SIGKILL."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import pytest
import redis.asyncio as aioredis

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import metric
from tests.helpers.kafka import answered, answering_at_least, at_least, json_values, produce_many, read_topic
from tests.helpers.messages import request, user_texts
from tests.helpers.polling import until
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import Worker, WorkerFactory

pytestmark = pytest.mark.e2e

CONSUMED = "enricher_records_consumed_total"
BUFFERED = "enricher_buffered_events"
BURST = [
    request("m-1", "c-burst", "first line: my order is late"),
    request("m-2", "c-burst", "second line: it was sent last week"),
    request("m-3", "c-burst", "third line: please hurry"),
]


async def send_while_the_first_is_answered(
    kafka: str, topic: str, mock_admin: MockAdmin, worker: Worker
) -> None:
    """Send the first line, and the other two once the LLM holds the first one's call; return once
    the worker has queued them behind it."""
    await produce_many(kafka, topic, BURST[:1])

    async def first_call_held() -> bool:
        return len(await mock_admin.requests()) == 1

    await until(first_call_held, "the first line's call reaches the LLM")
    await produce_many(kafka, topic, BURST[1:])

    async def queued_behind_it() -> bool:
        return await metric(worker, BUFFERED) == len(BURST)

    await until(queued_behind_it, "the other two lines wait behind the held call")


async def finished(worker: Worker, consumed: float) -> bool:
    """The worker has taken `consumed` records in all and finished every one of them."""
    return await metric(worker, CONSUMED) >= consumed and await metric(worker, BUFFERED) == 0


def covered(replies: list[dict[str, Any]]) -> Counter[str]:
    """How many times each message is answered by a distinct reply."""
    distinct = {reply["reply_id"]: reply for reply in replies}
    return Counter(message_id for reply in distinct.values() for message_id in reply["answers"])


async def test_lines_sent_while_the_first_is_answered_get_one_reply_together(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.script({"match": "first line", "hold": True})
    worker = await worker_factory()
    await send_while_the_first_is_answered(kafka, env["ENRICHER_INPUT_TOPIC"], mock_admin, worker)
    await mock_admin.release()
    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(2), caught_up=env)
    )

    assert [(r["message_id"], r["answers"]) for r in replies] == [("m-1", ["m-1"]), ("m-3", ["m-2", "m-3"])]
    calls = await mock_admin.requests()
    assert len(calls) == 2
    asked = user_texts(calls[1])[-1]
    assert "second line" in asked
    assert "third line" in asked
    assert "first line" in str(calls[1]["messages"])  # the first line and its answer are history now


@SEVERAL_PROCESSES
async def test_a_sigkill_while_the_two_are_answered_leaves_each_line_answered_once_in_order(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.script({"match": "first line", "hold": True}, {"match": "second line", "hold": True})
    first = await worker_factory()
    await send_while_the_first_is_answered(kafka, env["ENRICHER_INPUT_TOPIC"], mock_admin, first)
    await mock_admin.release()  # the first reply goes out; the one for the other two is held

    async def together_held() -> bool:
        return len(await mock_admin.requests()) == 2

    await until(together_held, "the call answering the other two reaches the LLM")
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(1))
    first.kill()
    await mock_admin.release()

    await worker_factory()
    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=answering_at_least(3), caught_up=env)
    )
    # However the redelivered two are grouped now, each line is answered once, in order.
    assert covered(replies) == {"m-1": 1, "m-2": 1, "m-3": 1}
    assert answered(replies) == ["m-1", "m-2", "m-3"]
    assert not any("first line" in user_texts(call)[-1] for call in (await mock_admin.requests())[2:])


@SEVERAL_PROCESSES
async def test_after_a_sigkill_a_redelivery_of_any_of_them_gets_the_same_reply(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
) -> None:
    env = enricher_env
    await mock_admin.script({"match": "first line", "hold": True})
    first = await worker_factory()
    await send_while_the_first_is_answered(kafka, env["ENRICHER_INPUT_TOPIC"], mock_admin, first)
    await mock_admin.release()
    before = json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(2)))
    first.kill()
    async with aioredis.from_url(env["REDIS_URL"]) as redis:  # as if killed before the marks were set
        await redis.delete(*(f"reply:m-{n}:published" for n in (1, 2, 3)))

    second = await worker_factory()
    for redelivered in ([BURST[1]], [BURST[2]], BURST):  # each alone, then all three at once
        consumed = await metric(second, CONSUMED) + len(redelivered)
        await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], redelivered)
        await until(partial(finished, second, consumed), "the worker takes and finishes the redelivered")
    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(3), caught_up=env)
    )
    assert replies[:2] == before
    again = replies[2:]
    assert {(r["reply_id"], r["text"], tuple(r["answers"])) for r in again} == {
        (r["reply_id"], r["text"], tuple(r["answers"])) for r in before
    }
    assert len(await mock_admin.requests()) == 2  # all from the store


async def test_with_coalescing_off_each_line_gets_its_own_reply(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.script({"match": "first line", "hold": True})
    worker = await worker_factory({"ENRICHER_COALESCE": "off"})
    await send_while_the_first_is_answered(kafka, env["ENRICHER_INPUT_TOPIC"], mock_admin, worker)
    await mock_admin.release()
    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(3), caught_up=env)
    )
    assert [(r["message_id"], r["answers"]) for r in replies] == [(f"m-{n}", [f"m-{n}"]) for n in (1, 2, 3)]
    assert len(await mock_admin.requests()) == 3
