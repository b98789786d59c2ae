"""Customer messages and the replies to them, as the delivery tests send and check them."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import httpx
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.helpers.kafka import answered, json_values, read_topic
from tests.helpers.workers import Worker

ANSWERED = 'enricher_messages_total{outcome="ok"}'
"""The metric sample of messages answered by the LLM (`metric(worker, ANSWERED)`)."""


def every_message_answered(message_ids: set[str]) -> Any:
    """A `read_topic` stop condition: every one of `message_ids` has a reply."""

    def check(records: list[Any]) -> bool:
        return message_ids <= set(answered(json_values(records)))

    return check


async def replies_to_all(
    kafka: str,
    topic: str,
    inputs: list[tuple[str, bytes]],
    timeout_s: float,
    caught_up: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The replies on `topic` once every input has one; with `caught_up` (the workers'
    environment), all of them once the workers have processed everything, repeats included."""
    ids = {json.loads(value)["message_id"] for _, value in inputs}
    until = every_message_answered(ids)
    return json_values(await read_topic(kafka, topic, until=until, timeout_s=timeout_s, caught_up=caught_up))


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


async def metric(worker: Worker, name: str, absent: float | None = None) -> float:
    """The value of one metric sample (`name` with its labels) of the worker's /metrics; `absent`
    when it has none (a labelled sample shows up with its first count), else an AssertionError."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{worker.web_url}/metrics")).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    if match is None and absent is not None:
        return absent
    assert match, name
    return float(match.group(1))


def assert_consistent_duplicates(replies: list[dict[str, Any]]) -> None:
    """Any repeat of a reply to a message carries the same reply_id and text."""
    first: dict[str, dict[str, Any]] = {}
    for reply in replies:
        for message_id in reply["answers"]:
            seen = first.setdefault(message_id, reply)
            assert (reply["reply_id"], reply["text"]) == (seen["reply_id"], seen["text"])


def calls_per_text(chat_requests: list[dict[str, Any]]) -> dict[str, int]:
    """How many of the mock LLM's recorded requests asked about each customer text."""
    counts: dict[str, int] = defaultdict(int)
    for chat_request in chat_requests:
        last_user = [m["content"] for m in chat_request["messages"] if m["role"] == "user"][-1]
        match = re.search(r"<customer_message>\s*(.*?)\s*</customer_message>", last_user, re.DOTALL)
        counts[match.group(1) if match else last_user] += 1
    return counts


def wait_for_exit(worker: Worker, timeout_s: float) -> int | None:
    """The worker's exit code once it exits, or None if it still runs after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while worker.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker.process.poll()


async def committed_offset(bootstrap: str, group: str, topic: str, partition: int) -> int:
    """The offset `group` committed on a partition of `topic`, or -1 when it committed none."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        tp = TopicPartition(topic, partition)
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return meta.offset if meta is not None else -1
