"""Structured replies end to end: a template with a response schema gets a JSON answer, validated; an
invalid one is repaired by asking once more, and one invalid twice is answered by the fallback with an
`invalid_structured` dead letter. The stream carries the text field only, once validated."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.kafka import at_least, json_values, produce_many, read_topic
from tests.helpers.messages import request, streamed_text, user_texts
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
# What the mock answers by script, matched by the customer's words, then by the repair request's.
NOT_JSON = "Sure! Your parcel left yesterday."
WRONG_TYPE = '{"answer": "Your parcel left yesterday.", "needs_human": "perhaps", "category": "order"}'
MISSING = '{"answer": "Your parcel left yesterday."}'


def asked_about(requests: list[dict[str, Any]], marker: str) -> list[dict[str, Any]]:
    """The mock's chat requests for the message whose text holds `marker`, repair requests included."""
    return [r for r in requests if any(marker in text for text in user_texts(r))]


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """The shipped templates, with e-mails answered by a structured template."""
    directory = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    (directory / "support_reply_complaint.j2").unlink()  # intent beats channel: keep to e-mails
    write(directory, "email.j2", GOOD_SYSTEM + GOOD_USER, extra=EMAIL_REPLY)
    return directory


async def test_structured_answers_are_validated_repaired_once_or_answered_by_the_fallback(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    prompts: Path,
) -> None:
    env = enricher_env
    await mock_admin.script(
        {"match": "ONCE-7", "text": NOT_JSON},
        {"match": "TWICE-9", "text": WRONG_TYPE},
        {"match": "'perhaps'", "text": MISSING},  # the repair request quotes what was wrong
    )
    await worker_factory({"ENRICHER_PROMPTS_DIR": str(prompts)})
    inputs = [
        request(
            "m-valid", "c-valid", "Where is my parcel VALID-3? Write to ada@example.com", channel="email"
        ),
        request("m-once", "c-once", "Where is my parcel? ONCE-7", channel="email"),
        request("m-twice", "c-twice", "Where is my parcel? TWICE-9", channel="email"),
    ]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    replies = {
        r["message_id"]: r
        for r in json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=at_least(3)))
    }
    [letter] = json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(1)))
    chunks = json_values(
        await read_topic(
            kafka,
            env["ENRICHER_STREAM_TOPIC"],
            until=lambda records: len([c for c in json_values(records) if c["done"]]) >= 3,
        )
    )
    requests = await mock_admin.requests()

    # A valid answer: `structured` is the object, `text` its text field, personal data restored.
    valid = replies["m-valid"]
    assert valid["status"] == "ok"
    assert valid["structured"] == {"answer": valid["text"], "needs_human": False, "category": "order"}
    assert "ada@example.com" in valid["text"]
    [asked] = asked_about(requests, "VALID-3")
    assert asked["response_format"]["type"] == "json_schema"
    assert asked["response_format"]["json_schema"]["schema"]["required"] == [
        "answer",
        "needs_human",
        "category",
    ]
    assert not any("ada@example.com" in text for text in user_texts(asked))  # masked for the LLM

    # Invalid once: asked again with what was wrong, after its own answer; the repaired one counts.
    once = replies["m-once"]
    assert once["status"] == "ok"
    assert once["structured"]["answer"] == once["text"]
    first, repair = asked_about(requests, "ONCE-7")
    assert repair["messages"][: len(first["messages"])] == first["messages"]
    assert repair["messages"][-2] == {"role": "assistant", "content": NOT_JSON}
    assert "not JSON" in repair["messages"][-1]["content"]

    # Invalid twice: the fallback, and a dead letter naming the rule, not the answer's words.
    twice = replies["m-twice"]
    assert (twice["status"], twice["structured"]) == ("fallback", None)
    assert len(asked_about(requests, "TWICE-9")) == 2
    assert letter["error"]["kind"] == "invalid_structured"
    assert letter["error"]["detail"].startswith('$ fails the schema\'s rule {"required"')
    assert "parcel" not in letter["error"]["detail"]

    # The stream carries each reply's text, never the JSON the LLM wrote.
    for message_id, reply in replies.items():
        assert streamed_text(chunks, message_id) == reply["text"]
    assert not any("{" in chunk["delta"] for chunk in chunks)
