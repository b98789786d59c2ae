"""The bounded tool-calling loop over a scripted provider on the seam: calls assembled from their
streamed fragments, run, answered; rounds bounded; only the answer streams; failures told to the LLM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from app.llm.client import CallOptions, LLMClient
from app.llm.tool_calls import ToolCall, ToolResult, ToolUse
from app.llm.tool_loop import UNDECLARED, complete_with_tools
from app.tokens import ChatMessage
from tests.helpers.provider import ScriptedProvider, Turn, policy_on
from tests.helpers.sinks import Collected

ORDER_STATUS: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "order_status",
        "description": "The status of one of the customer's orders.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
CHAT: list[ChatMessage] = [
    {"role": "system", "content": "You are a support agent.\n- name: Ada"},
    {"role": "user", "content": "Where is my order A-1042?"},
]


class Tools:
    """A ToolRunner for the tests: answers from `answers` by tool name, keeps every call."""

    def __init__(
        self,
        answers: dict[str, ToolResult],
        *,
        declared: tuple[str, ...] = ("order_status",),
        takes_s: float = 0.0,
    ) -> None:
        self.answers = answers
        self.declared = declared
        self.takes_s = takes_s
        self.calls: list[ToolCall] = []
        self.pause = asyncio.Event()
        self.pause.set()
        self.entered = asyncio.Semaphore(0)
        self.running = 0
        self.most_running = 0

    def declarations(self) -> list[dict[str, Any]]:
        return [
            {**ORDER_STATUS, "function": {**ORDER_STATUS["function"], "name": name}} for name in self.declared
        ]

    async def run(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.entered.release()
        try:
            await asyncio.sleep(self.takes_s)
            await self.pause.wait()
            if call.name == "broken":
                raise RuntimeError("the runner broke its promise")
            return self.answers.get(call.name, ToolResult(content=f"error: no tool {call.name}", ok=False))
        finally:
            self.running -= 1


SHIPPED = ToolResult(content='{"order_id": "A-1042", "status": "shipped"}', ok=True)


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
async def llm(provider: ScriptedProvider) -> AsyncIterator[LLMClient]:
    client = policy_on(provider)
    yield client
    await client.aclose()


async def test_a_called_tool_s_result_reaches_the_answer_and_only_the_answer_streams(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    tools, sink = Tools({"order_status": SHIPPED}), Collected()

    completion = await complete_with_tools(llm, CHAT, CallOptions(), tools, max_steps=3, sink=sink)

    (call,) = tools.calls  # its arguments came in three fragments
    assert (call.name, json.loads(call.arguments)) == ("order_status", {"order_id": "A-1042"})
    assert 'I looked it up: "{"order_id": "A-1042", "status": "shipped"}"' in completion.text
    assert "".join(sink.deltas) == completion.text
    assert [(use.name, use.ok) for use in completion.tools] == [("order_status", True)]
    asking, answering = provider.received
    assert asking.body["tools"] == [ORDER_STATUS]
    assert asking.body["tool_choice"] == "auto"
    assistant, result = answering.body["messages"][-2:]
    assert assistant["tool_calls"] == [
        {"id": call.id, "type": "function", "function": {"name": "order_status", "arguments": call.arguments}}
    ]
    assert result == {"role": "tool", "tool_call_id": call.id, "content": SHIPPED.content}
    assert completion.tool_calls == ()
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == sum(
        part for part in (completion.usage.prompt_tokens, completion.usage.completion_tokens)
    )


async def test_the_usage_adds_up_every_round(llm: LLMClient, provider: ScriptedProvider) -> None:
    provider.script = [Turn(calls=(("order_status", '{"order_id": "A-1042"}'),))]
    completion = await complete_with_tools(llm, CHAT, CallOptions(), Tools({"order_status": SHIPPED}), 3)

    alone = await llm.complete(provider.received[-1].body["messages"], CallOptions())
    assert completion.usage.prompt_tokens == 10 + alone.usage.prompt_tokens  # the scripted round's 10
    assert completion.usage.completion_tokens == 5 + alone.usage.completion_tokens


async def test_calls_of_one_round_run_together_and_are_listed_in_order(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    provider.script = [Turn(calls=(("order_status", '{"order_id": "1"}'), ("refund", '{"order_id": "2"}')))]
    tools = Tools({"order_status": SHIPPED}, declared=("order_status", "refund"))
    tools.pause.clear()

    answering = asyncio.create_task(complete_with_tools(llm, CHAT, CallOptions(), tools, 3))
    for _ in range(2):  # both wait at once: neither waited for the other to finish
        async with asyncio.timeout(5):
            await tools.entered.acquire()
    tools.pause.set()
    completion = await answering

    assert tools.most_running == 2
    assert [(use.name, use.ok) for use in completion.tools] == [("order_status", True), ("refund", False)]
    assert "error: no tool refund" in completion.text


async def test_after_max_steps_rounds_the_llm_is_asked_once_more_without_tools(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    again = Turn(calls=(("order_status", '{"order_id": "A-1042"}'),))
    provider.script = [again, again, again]
    tools = Tools({"order_status": SHIPPED})

    completion = await complete_with_tools(llm, CHAT, CallOptions(), tools, max_steps=2)

    assert len(tools.calls) == 2
    assert [request.body.get("tool_choice") for request in provider.received] == ["auto", "auto", "none"]
    assert len(completion.tools) == 2
    assert completion.tool_calls == ()  # the third scripted call is never run


async def test_a_preamble_to_the_calls_is_voided_on_the_stream(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    provider.script = [Turn(calls=(("order_status", '{"order_id": "A-1042"}'),), preamble="Let me look.")]
    sink = Collected()

    completion = await complete_with_tools(
        llm, CHAT, CallOptions(), Tools({"order_status": SHIPPED}), 3, sink
    )

    assert sink.restarts == 1
    assert "".join(sink.deltas) == completion.text
    assert "Let me look." not in completion.text
    assistant = provider.received[-1].body["messages"][-2]
    assert assistant["content"] == "Let me look."


async def test_a_failing_or_raising_tool_is_told_to_the_llm_and_the_reply_goes_on(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    provider.script = [Turn(calls=(("broken", "{}"), ("order_status", "{}")))]
    failed = ToolResult(content="error: the order service answered 500", ok=False)
    tools = Tools({"order_status": failed}, declared=("broken", "order_status"))

    completion = await complete_with_tools(llm, CHAT, CallOptions(), tools, 3)

    assert [(use.name, use.ok) for use in completion.tools] == [("broken", False), ("order_status", False)]
    told = [m["content"] for m in provider.received[-1].body["messages"] if m["role"] == "tool"]
    assert told == ["error: the tool failed", failed.content]


async def test_a_tool_name_the_llm_made_up_is_counted_as_undeclared(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    def made_up() -> float:
        labels = {"tool": UNDECLARED, "outcome": "error"}
        return REGISTRY.get_sample_value("enricher_tool_call_seconds_count", labels) or 0.0

    before = made_up()
    provider.script = [Turn(calls=(("delete_everything", "{}"),))]
    completion = await complete_with_tools(llm, CHAT, CallOptions(), Tools({}), 3)

    assert completion.tools == (ToolUse(name="delete_everything", ok=False, ms=completion.tools[0].ms),)
    assert made_up() == before + 1


async def test_without_tools_or_steps_the_llm_is_offered_none(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    await complete_with_tools(llm, CHAT, CallOptions(), None, 3)
    await complete_with_tools(llm, CHAT, CallOptions(), Tools({"order_status": SHIPPED}), 0)

    assert all("tools" not in request.body for request in provider.received)


async def test_each_round_is_one_policy_call_retried_on_its_own(
    llm: LLMClient, provider: ScriptedProvider
) -> None:
    provider.script = [Turn(calls=(("order_status", '{"order_id": "A-1042"}'),)), Turn(status=500)]

    completion = await complete_with_tools(llm, CHAT, CallOptions(), Tools({"order_status": SHIPPED}), 3)

    assert len(provider.received) == 3  # the call, the answer's failed attempt, its retry
    assert "I looked it up" in completion.text


async def test_no_llm_deadline_runs_while_the_tools_do(provider: ScriptedProvider) -> None:
    # A tool slower than the first-token deadline and the LLM deadline: neither fires.
    llm = policy_on(
        provider,
        ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S="0.2",
        ENRICHER_LLM_DEADLINE_S="0.5",
        ENRICHER_LLM_TIMEOUT_S="0.5",
    )
    try:
        slow = Tools({"order_status": SHIPPED}, takes_s=0.6)
        completion = await complete_with_tools(llm, CHAT, CallOptions(), slow, 3)
    finally:
        await llm.aclose()

    assert len(provider.received) == 2  # no attempt was dropped and retried
    assert "I looked it up" in completion.text
