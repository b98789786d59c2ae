"""The mock LLM's JSON answers to a `response_format`, over HTTP with the real openai client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from devstack.mock_llm.admin import MockAdmin
from devstack.mock_llm.chat import compose_reply

SCHEMA = {
    "type": "object",
    "required": ["reply", "needs_human", "category", "tags", "priority"],
    "properties": {
        "reply": {"type": "string", "maxLength": 40},
        "needs_human": {"type": "boolean"},
        "category": {"type": "string", "enum": ["order", "billing"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "priority": {"type": ["integer", "null"], "minimum": 1},
        "note": {"type": "string"},
    },
}
MESSAGES: list[Any] = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture
async def llm(mock_url: str) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=mock_url, api_key="x", max_retries=0, timeout=5)
    yield client
    await client.close()


async def answer(llm: AsyncOpenAI, response_format: Any) -> str:
    completion = await llm.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, response_format=response_format
    )
    return completion.choices[0].message.content or ""


async def test_a_schema_is_answered_with_its_required_properties_filled_by_type(llm: AsyncOpenAI) -> None:
    schema_format = {"type": "json_schema", "json_schema": {"name": "reply", "schema": SCHEMA}}

    answered = json.loads(await answer(llm, schema_format))

    text = compose_reply(MESSAGES)
    assert answered == {
        "reply": text[:40],
        "needs_human": False,
        "category": "order",
        "tags": [text],
        "priority": 1,
    }


async def test_json_object_mode_and_scripted_text(llm: AsyncOpenAI, mock_url: str) -> None:
    assert json.loads(await answer(llm, {"type": "json_object"})) == {"reply": compose_reply(MESSAGES)}

    async with MockAdmin(mock_url) as admin:
        await admin.script({"text": "not JSON at all"})
        assert await answer(llm, {"type": "json_object"}) == "not JSON at all"
        [*_, last] = await admin.requests()
    assert last["response_format"] == {"type": "json_object"}
