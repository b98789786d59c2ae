"""Promise 7 and the reply's signals, end to end: personal data never reaches the LLM, and the
customer sees their own data in the reply and in its stream."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.kafka import at_least, json_values, produce_many, read_topic
from tests.helpers.messages import request, streamed_text
from tests.helpers.workers import PROMPTS, WorkerFactory

pytestmark = pytest.mark.e2e

EMAIL, PHONE, CARD = "ada.lovelace@example.org", "+44 20 7946 0958", "4111 1111 1111 1111"
TEXT = f"My card {CARD} was charged twice. Write to {EMAIL} or call {PHONE}."
FOLLOW_UP = "Any news on the refund?"
# One of each format the masking knows, as a customer would write it (each valid by its checks).
FORMATS = {
    "card with dots": "4111.1111.1111.1111",
    "card over a line break": "5555 5555 5555\n4444",
    "US SSN": "123-45-6789",
    "UK NI number": "AB 12 34 56 C",
    "German Steuer-ID": "12345678995",
    "French NIR": "2 85 03 75 123 456 88",
    "US phone, plain": "4155552671",
    "E.164 phone": "+14155552671",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "e-mail": "grace@example.org",
}


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


def digits_of(value: str) -> str:
    """A number as the LLM would still recognise it, however it was grouped."""
    return "".join(char for char in value if char.isalnum())


@pytest.mark.parametrize("models", ["on", "off"])
async def test_every_format_is_masked_for_the_llm_and_restored_in_the_reply(
    models: str,
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
) -> None:
    env = enricher_env
    await worker_factory({"ENRICHER_SIGNALS": models})  # masking needs none of the models
    inputs = [
        request(f"m-{n}", f"c-format-{n}", f"Mine: {value}") for n, value in enumerate(FORMATS.values())
    ]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    replies = {
        reply["message_id"]: reply
        for reply in json_values(
            await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(len(inputs)), timeout_s=60)
        )
    }
    chunks = json_values(await read_topic(kafka, env["ENRICHER_STREAM_TOPIC"], until=at_least(len(inputs))))

    prompts = json.dumps(await mock_admin.requests(), ensure_ascii=False)
    for n, (name, value) in enumerate(FORMATS.items()):
        assert value not in prompts, name
        assert digits_of(value) not in digits_of(prompts), name
        reply = replies[f"m-{n}"]
        assert reply["status"] == "ok", name
        assert value in reply["text"], name  # the mock quotes the message: its placeholder, restored
        assert streamed_text(chunks, f"m-{n}") == reply["text"], name
        assert bool(reply.get("signals")) == (models == "on"), name


async def test_the_profile_and_the_metadata_reach_the_llm_masked(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    tmp_path: Path,
) -> None:
    env = enricher_env
    prompts_dir = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    template = prompts_dir / "support_reply.j2"
    source = template.read_text()
    assert source.count("Customer profile:\n") == 1
    template.write_text(
        source.replace(
            "Customer profile:\n",
            "{% if customer.notes is defined %}Notes: {{ customer.notes }}{% endif %}\n"
            "{% if metadata.callback is defined %}Call back on: {{ metadata.callback }}{% endif %}\n"
            "Customer profile:\n",
        )
    )
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        await redis.hset("customer:cust-notes", mapping={"name": "Ada", "notes": f"prefers {EMAIL}"})
    await mock_admin.script({"match": "reach me", "text": "We will write to [EMAIL_1] and call [PHONE_1]."})
    await worker_factory({"ENRICHER_PROMPTS_DIR": str(prompts_dir)})
    ask = request("m-1", "c-notes", "Please reach me", customer_id="cust-notes", metadata={"callback": PHONE})
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], [ask])
    (reply,) = json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(1)))

    prompts = json.dumps(await mock_admin.requests())
    assert "Notes: prefers [EMAIL_1]" in prompts
    assert "Call back on: [PHONE_1]" in prompts
    assert EMAIL not in prompts
    assert "7946 0958" not in prompts
    assert reply["text"] == f"We will write to {EMAIL} and call {PHONE}."
