"""Promise 7 and the reply's signals, end to end: personal data never reaches the LLM, and the
customer sees their own data in the reply and in its stream."""

from __future__ import annotations

import json

import pytest

from app.devtools.mock_llm.admin import MockAdmin
from tests.e2e.test_support_flow import request, streamed_text
from tests.helpers.kafka import at_least, json_values, produce_many, read_topic
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e

EMAIL, PHONE, CARD = "ada.lovelace@example.org", "+44 20 7946 0958", "4111 1111 1111 1111"
TEXT = f"My card {CARD} was charged twice. Write to {EMAIL} or call {PHONE}."
FOLLOW_UP = "Any news on the refund?"


async def test_personal_data_is_masked_for_the_llm_and_restored_for_the_customer(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await mock_admin.config(latency_ms=300)  # long enough to stream in several chunks
    await worker_factory()
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], [request("m-1", "c-pii", TEXT)])
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(1), timeout_s=30)
    # The follow-up's prompt carries the first message (and its reply) as history.
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], [request("m-2", "c-pii", FOLLOW_UP)])
    replies = json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(2)))
    chunks = json_values(await read_topic(kafka, env["ENRICHER_STREAM_TOPIC"], until=at_least(2)))

    prompts = json.dumps(await mock_admin.requests())
    for value in (EMAIL, PHONE, CARD, CARD.replace(" ", ""), "7946 0958"):
        assert value not in prompts
    assert "[EMAIL_1]" in prompts
    assert "[CARD_1]" in prompts

    first = next(reply for reply in replies if reply["message_id"] == "m-1")
    assert EMAIL in first["text"]  # the mock quotes the message, placeholders and all
    assert "[EMAIL_1]" not in first["text"]
    assert streamed_text(chunks, "m-1") == first["text"]
    assert first["signals"]["language"] == "en"
    assert sorted(first["signals"]["pii"]) == ["card", "email", "phone"]
    follow_up = next(reply for reply in replies if reply["message_id"] == "m-2")
    assert follow_up["signals"]["pii"] == []
    assert follow_up["signals"]["intent"] == "refund"


async def test_masking_can_be_turned_off(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    await worker_factory({"ENRICHER_PII_MASKING": "off"})
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], [request("m-1", "c-open", TEXT)])
    (reply,) = json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(1)))
    assert EMAIL in json.dumps(await mock_admin.requests())
    assert sorted(reply["signals"]["pii"]) == ["card", "email", "phone"]  # still detected and said
