"""The mock LLM's tool calling, driven over HTTP by the real openai client: the calls it makes for
what the message names, streamed in fragments or whole, and its answer from the tools' results."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from devstack.mock_llm.tools import calls_for

MODEL = "gpt-4o-mini"


def tool(name: str, parameter: str, **schema: Any) -> ChatCompletionToolParam:
    properties = {parameter: {"type": "string", **schema}}
    parameters: dict[str, object] = {"type": "object", "properties": properties, "required": [parameter]}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


ORDER_STATUS = tool("order_status", "order_id", description="The order number, e.g. A-1042")
TRACKING = tool("delivery_estimate", "tracking_number", pattern=r"^TRK-\d+$")


def arguments(tools: list[ChatCompletionToolParam], text: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (call["function"]["name"], json.loads(call["function"]["arguments"]))
        for call in calls_for(tools, text)
    ]


@pytest.mark.parametrize(
    ("text", "called"),
    [
        ("Where is my order A-1042?", [("order_status", {"order_id": "A-1042"})]),
        ("My order #10042 has not arrived", [("order_status", {"order_id": "10042"})]),
        ("Where is my order? It is 4411.", [("order_status", {"order_id": "4411"})]),
        ("Question 3 of conversation 4", []),
        ("My order is late", []),
        (
            "tracking 77 or TRK-9 for order B-2",
            [("order_status", {"order_id": "B-2"}), ("delivery_estimate", {"tracking_number": "TRK-9"})],
        ),
        ("tracking 77 only", []),
    ],
)
def test_a_tool_is_called_for_the_value_the_message_names_after_its_thing(
    text: str, called: list[tuple[str, dict[str, str]]]
) -> None:
    assert arguments([ORDER_STATUS, TRACKING], text) == called


@pytest.fixture
async def llm(mock_url: str) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=mock_url, api_key="x", max_retries=0, timeout=5)
    yield client
    await client.close()


ASKED: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Where is my order A-1042?"}]


async def test_the_calls_stream_in_fragments_that_make_the_whole_call(llm: AsyncOpenAI) -> None:
    stream = await llm.chat.completions.create(model=MODEL, messages=ASKED, tools=[ORDER_STATUS], stream=True)
    fragments, finish = [], None
    async for chunk in stream:
        for choice in chunk.choices:
            fragments += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish

    assert finish == "tool_calls"
    assert len(fragments) > 2
    assert fragments[0].function is not None
    assert fragments[0].function.name == "order_status"
    assert fragments[0].id
    pieces = "".join(f.function.arguments or "" for f in fragments if f.function is not None)
    assert json.loads(pieces) == {"order_id": "A-1042"}


async def test_a_whole_answer_calls_and_the_next_quotes_the_result(llm: AsyncOpenAI) -> None:
    asking = await llm.chat.completions.create(model=MODEL, messages=ASKED, tools=[ORDER_STATUS])
    message = asking.choices[0].message
    assert asking.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    (call,) = message.tool_calls
    assert call.type == "function"
    assert json.loads(call.function.arguments) == {"order_id": "A-1042"}

    answered = await llm.chat.completions.create(
        model=MODEL,
        tools=[ORDER_STATUS],
        messages=[
            *ASKED,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.function.name, "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": '{"status": "shipped"}'},
        ],
    )

    assert answered.choices[0].message.tool_calls is None
    assert 'I looked it up: "{"status": "shipped"}".' in (answered.choices[0].message.content or "")


async def test_no_call_when_the_request_says_none(llm: AsyncOpenAI) -> None:
    answer = await llm.chat.completions.create(
        model=MODEL, messages=ASKED, tools=[ORDER_STATUS], tool_choice="none"
    )

    assert answer.choices[0].message.tool_calls is None
    assert (answer.choices[0].message.content or "").startswith("Hi there, thanks for your message")
