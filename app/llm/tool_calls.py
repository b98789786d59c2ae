"""The interface between the LLM's tool-calling loop and the tools a reply may call.

The loop (app/llm) asks the LLM, hands each `ToolCall` it gets back to a `ToolRunner`, feeds
the `ToolResult` to the LLM and records a `ToolUse` per call for the reply's `tools`; the
tools themselves (app/tools) implement `ToolRunner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the LLM asked for: the provider's call id, the tool's name, its arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool answered, as the text the LLM reads, and whether it succeeded."""

    content: str
    ok: bool


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One tool call made for a reply, as the reply's `tools` lists it."""

    name: str
    ok: bool
    ms: int


class ToolRunner(Protocol):
    """The tools one reply may call."""

    def declarations(self) -> list[dict[str, Any]]:
        """The tools as the OpenAI `tools` request parameter declares them."""
        ...

    async def run(self, call: ToolCall) -> ToolResult:
        """Run one call; never raises, and enforces its own timeout."""
        ...
