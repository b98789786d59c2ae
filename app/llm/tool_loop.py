"""The bounded tool-calling loop: ask the LLM, run the tools it calls, ask again with their results.

Each round is one `LLMClient.complete` call, so retries, limits, the breaker and the deadlines
apply to each call on its own, and no LLM deadline runs while the tools do. After
ENRICHER_TOOL_MAX_STEPS rounds that called tools, one more call with `tool_choice: "none"` gives
the answer. Only the answer's text streams: text a round streamed before it turned out to call
tools is voided (the sink's `restart`, a `reset` chunk on the stream topic).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence

from app.llm.client import CallOptions, Completion, DeltaSink, LLMClient
from app.llm.tool_calls import ToolCall, ToolResult, ToolRunner, ToolUse
from app.observability import metrics
from app.schemas import Usage
from app.tokens import ChatMessage

log = logging.getLogger(__name__)

UNDECLARED = "undeclared"  # the metric's tool label for a name the LLM made up: labels stay bounded


async def complete_with_tools(
    llm: LLMClient,
    messages: Sequence[ChatMessage],
    options: CallOptions,
    tools: ToolRunner | None,
    max_steps: int,
    sink: DeltaSink | None = None,
) -> Completion:
    """The LLM's answer to `messages`, having called `tools` for at most `max_steps` rounds.

    The completion's `usage` adds up every round's, its `tools` lists each call made, in order.
    Raises as `LLMClient.complete` does; a tool's failure is told to the LLM as its result.
    """
    declared = tools.declarations() if tools is not None and max_steps > 0 else []
    if tools is None or not declared:
        return await llm.complete(messages, options, sink)
    names = {str(declaration.get("function", {}).get("name")) for declaration in declared}
    chat, uses, usage = list(messages), list[ToolUse](), Usage()
    asking = dataclasses.replace(options, tools=declared, tool_choice="auto")
    for step in range(max_steps):
        round_sink = _Round(sink) if sink is not None else None
        completion = await llm.complete(chat, asking, round_sink)
        usage = _sum(usage, completion.usage)
        if not completion.tool_calls:
            return dataclasses.replace(completion, usage=usage, tools=tuple(uses))
        if round_sink is not None and round_sink.sent:
            round_sink.restart()  # a preamble to the calls is not the answer
        log.debug("llm calls tools", extra={"step": step, "tools": [c.name for c in completion.tool_calls]})
        done = await asyncio.gather(*(_run(tools, call, names) for call in completion.tool_calls))
        uses += [use for _, use in done]
        chat.append(_asking(completion))
        chat += [
            {"role": "tool", "tool_call_id": call.id, "content": result.content}
            for call, (result, _) in zip(completion.tool_calls, done, strict=True)
        ]
    final = await llm.complete(chat, dataclasses.replace(asking, tool_choice="none"), sink)
    # A model that calls tools all the same is answered by its text: no round is left.
    return dataclasses.replace(final, usage=_sum(usage, final.usage), tool_calls=(), tools=tuple(uses))


async def _run(tools: ToolRunner, call: ToolCall, names: set[str]) -> tuple[ToolResult, ToolUse]:
    """One call, timed and counted; a runner that breaks its promise not to raise fails the call only."""
    started = time.monotonic()
    try:
        result = await tools.run(call)
    except Exception:  # the reply goes on: the LLM reads that the tool failed
        log.exception("tool runner raised", extra={"tool": call.name})
        result = ToolResult(content="error: the tool failed", ok=False)
    seconds = time.monotonic() - started
    label = call.name if call.name in names else UNDECLARED
    metrics.TOOL_CALL_LATENCY.labels(label, "ok" if result.ok else "error").observe(seconds)
    return result, ToolUse(name=call.name, ok=result.ok, ms=round(seconds * 1000))


def _asking(completion: Completion) -> ChatMessage:
    """The assistant message that asked for the calls, as the next round's request repeats it."""
    return {
        "role": "assistant",
        "content": completion.text,
        "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in completion.tool_calls
        ],
    }


def _sum(total: Usage, more: Usage) -> Usage:
    """Token counts of two calls together (the cost is priced later, from the sum)."""
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        total_tokens=total.total_tokens + more.total_tokens,
        cached_tokens=total.cached_tokens + more.cached_tokens,
    )


class _Round:
    """The sink of one round: passes the text on, remembering whether any went since the last
    restart, so that the text can be voided if the round turns out to call tools."""

    def __init__(self, sink: DeltaSink) -> None:
        self._sink = sink
        self.sent = False

    async def send(self, delta: str) -> None:
        """Pass `delta` on."""
        self.sent = True
        await self._sink.send(delta)

    def restart(self) -> None:
        """The attempt failed: what it sent is void."""
        self.sent = False
        self._sink.restart()
