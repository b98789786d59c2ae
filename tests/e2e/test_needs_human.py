"""The AI's own handoff, end to end: a structured answer saying `needs_human: true` hands the
conversation to a human when a rule of prompts/handoff.yaml on `needs_human` applies (its tiers
heeded): the handoff reply instead of the answer, a handoff record, and the next message for the
human. Otherwise the answer is an ordinary reply with its `structured`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.redis_keys import state_key
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import replies_to_all
from tests.helpers.kafka import at_least, json_values, produce, produce_many, read_topic
from tests.helpers.messages import request, requests_for, streamed_text
from tests.helpers.template_cases import GOOD_SYSTEM, GOOD_USER, write
from tests.helpers.workers import PROMPTS, WorkerFactory

pytestmark = pytest.mark.e2e

EMAIL_REPLY = """when:
  channel: email
response:
  text_field: answer
  schema:
    type: object
    required: [answer, needs_human, category]
    properties:
      answer: {type: string}
      needs_human: {type: boolean}
      category: {type: string, enum: [order, billing, other]}
"""
# Words of the AI's answer that must reach no one when the conversation goes to a human.
ANSWER = "I am sorry your blender broke; a refund is beyond what I may promise."
SAYS_SO = json.dumps({"answer": ANSWER, "needs_human": True, "category": "order"})


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """The shipped templates and rules, e-mails answered by a structured template, and the shipped
    `needs_human` rule kept to gold customers."""
    directory = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    for chosen_first in ("support_reply_complaint.j2", "support_reply_gold.j2"):  # before channel
        (directory / chosen_first).unlink()
    write(directory, "email.j2", GOOD_SYSTEM + GOOD_USER, extra=EMAIL_REPLY)
    rules = directory / "handoff.yaml"
    shipped = rules.read_text()
    assert shipped.endswith("    needs_human: true\n")  # the shipped rule, last in the file
    rules.write_text(shipped + "    tiers: [gold]\n")
    return directory


def one(records: list[dict[str, Any]], message_id: str) -> dict[str, Any]:
    [found] = [record for record in records if record["message_id"] == message_id]
    return found


async def test_an_answer_saying_needs_human_hands_the_conversation_over(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    prompts: Path,
) -> None:
    env = enricher_env
    inputs, replies, handoffs, stream = (
        env[f"ENRICHER_{name}_TOPIC"] for name in ("INPUT", "REPLY", "HANDOFF", "STREAM")
    )
    await mock_admin.script({"match": "BROKEN-1", "text": SAYS_SO}, {"match": "BROKEN-2", "text": SAYS_SO})
    async with aioredis.from_url(env["REDIS_URL"], decode_responses=True) as redis:
        await redis.hset("customer:cust-gold", mapping={"name": "Ada", "tier": "gold"})
        await redis.hset("customer:cust-silver", mapping={"name": "Bob", "tier": "silver"})
        await worker_factory({"ENRICHER_PROMPTS_DIR": str(prompts)})
        sent = [
            request("m-gold", "c-gold", "My blender BROKEN-1 arrived in pieces", **email("cust-gold")),
            request("m-silver", "c-silver", "My blender BROKEN-2 arrived in pieces", **email("cust-silver")),
            request("m-fine", "c-fine", "Where is my parcel FINE-3?", **email("cust-gold")),
        ]
        await produce_many(kafka, inputs, sent)
        answered = await replies_to_all(kafka, replies, sent, timeout_s=20)
        [record] = json_values(await read_topic(kafka, handoffs, until=at_least(1)))

        # Gold, and the answer says needs_human: the handoff reply, nothing of the answer.
        gold = one(answered, "m-gold")
        assert gold["status"] == "handoff"
        assert gold["text"].startswith("Hi Ada,")
        assert "member of our team" in gold["text"]
        assert "blender" not in gold["text"]
        assert gold["structured"] is None
        assert gold["handoff"] == {"kind": "needs_human", "detail": gold["handoff"]["detail"]}
        assert gold["handoff"]["detail"].startswith("rule 'the AI says so': ")
        assert gold["usage"]["completion_tokens"] > 0  # the answer's tokens were spent
        assert (record["conversation_id"], record["message_ids"], record["reason"]) == (
            "c-gold",
            ["m-gold"],
            gold["handoff"],
        )
        assert await redis.get(state_key("c-gold")) == "human"
        chunks = json_values(
            await read_topic(kafka, stream, until=lambda rs: sum(c["done"] for c in json_values(rs)) >= 3)
        )
        assert streamed_text(chunks, "m-gold") == gold["text"]
        assert not any("blender" in chunk["delta"] for chunk in chunks if chunk["message_id"] == "m-gold")

        # Silver: the rule is for gold customers only, so the answer goes out as it is.
        silver = one(answered, "m-silver")
        assert silver["status"] == "ok"
        assert silver["structured"] == {"answer": ANSWER, "needs_human": True, "category": "order"}
        assert silver["text"] == ANSWER
        assert await redis.get(state_key("c-silver")) is None

        # The answer says no person is needed: an ordinary reply.
        fine = one(answered, "m-fine")
        assert fine["status"] == "ok"
        assert fine["structured"]["needs_human"] is False
        assert fine["text"] == fine["structured"]["answer"]

        # The conversation is held: the next message goes to the human, not the LLM.
        await produce(kafka, inputs, *request("m-next", "c-gold", "Hello? NEXT-4", **email("cust-gold")))
        for_human = json_values(await read_topic(kafka, handoffs, until=at_least(2)))
    assert {key: for_human[1][key] for key in ("conversation_id", "message_id", "text")} == {
        "conversation_id": "c-gold",
        "message_id": "m-next",
        "text": "Hello? NEXT-4",
    }
    assert requests_for(await mock_admin.requests(), "NEXT-4") == []
    everything = json_values(await read_topic(kafka, replies, caught_up=env))
    assert "m-next" not in {reply["message_id"] for reply in everything}


def email(customer_id: str) -> dict[str, str]:
    """An e-mail's fields: its channel chooses the structured template."""
    return {"channel": "email", "customer_id": customer_id}
