"""The labelled handoff messages' test split end to end: each sent on a conversation of its own, all
at once, to a real worker (broker, Redis, mock LLM over HTTP). Each request the shipped rules hear
gets a handoff record and the `handoff` reply without a call to the LLM; each near miss is answered
by the AI; and the worker meets the targets bench/handoff.py reports."""

from __future__ import annotations

import pytest

from app.prompts.handoff_rules import read_rules
from bench.handoff_messages import labelled, score
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.kafka import at_least, json_values, produce_many, read_topic
from tests.helpers.messages import request, requests_for
from tests.helpers.workers import PROMPTS, WorkerFactory

pytestmark = pytest.mark.e2e


async def test_the_test_split_is_handed_over_or_answered_as_labelled(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    messages = labelled("test")
    by_id = {f"lab-{n}": message for n, message in enumerate(messages)}
    rules, _ = read_rules(PROMPTS / "handoff.yaml", ())
    expected = {
        message_id
        for message_id, message in by_id.items()
        if rules.decide(intent=None, sentiment=None, tier="", fallbacks_in_a_row=0, text=message.text)
    }
    await worker_factory()

    await produce_many(
        kafka,
        env["ENRICHER_INPUT_TOPIC"],
        [request(message_id, f"conv-{message_id}", message.text) for message_id, message in by_id.items()],
    )

    replies = json_values(
        await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(len(by_id)), timeout_s=25)
    )
    status = {reply["message_id"]: reply["status"] for reply in replies}
    handed = {message_id for message_id, state in status.items() if state == "handoff"}
    assert set(status) == set(by_id)
    assert handed == expected  # the worker decides as the rules do in the bench
    assert {status[message_id] for message_id in set(by_id) - handed} == {"ok"}
    records = json_values(
        await read_topic(kafka, env["ENRICHER_HANDOFF_TOPIC"], until=at_least(len(handed)), timeout_s=10)
    )
    assert sorted(id_ for record in records for id_ in record["message_ids"]) == sorted(handed)
    assert {record["reason"]["kind"] for record in records} == {"phrase"}
    # No LLM call for a handoff.
    calls = await mock_admin.requests()
    assert [
        by_id[message_id].text for message_id in handed if requests_for(calls, by_id[message_id].text)
    ] == []
    assert calls
    handed_over = {by_id[message_id] for message_id in handed}
    result = score(messages, lambda message: message in handed_over)
    assert result.recall >= 0.95, result.missed
    assert result.false_handoffs <= 0.02, result.wrongly_handed_over
