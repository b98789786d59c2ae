"""What the mock LLM does with tools: the calls it makes, and its answer once their results are in.

It calls a declared function when the customer's message holds a value for each of its required
parameters. A parameter named after a thing (`order_id`, `order_number`, `order`: the thing is
`order`) takes the first word after that thing's name in the message that holds a digit and,
if the parameter has a `pattern`, matches it: "Where is my order A-1042?" calls
`order_status(order_id="A-1042")`, "Question 3 of 4" calls nothing. Each function is called at
most once a request, several in one answer. When the request's last message is a tool's result,
the answer quotes the results, so a test can see them reach the reply.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence

from app.tokens import ChatMessage, ToolCallEntry
from devstack.mock_llm.state import Json

ARGUMENT_PIECES = 3  # a call's arguments stream in this many fragments, as real providers cut them
QUOTED_CHARS = 300
_THING = re.compile(r"^(?P<thing>[a-z]+?)(?:_(?:id|number|no|code|ref))?$")
_WORD = re.compile(r"[^\s,;:!?\"'()]+")


def calls_for(tools: Sequence[object], text: str) -> list[ToolCallEntry]:
    """The calls the mock makes for a customer's `text`, given the request's `tools`."""
    calls: list[ToolCallEntry] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        arguments = _arguments(function.get("parameters"), text)
        if arguments is not None:
            entry: ToolCallEntry = {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": function["name"], "arguments": json.dumps(arguments)},
            }
            calls.append(entry)
    return calls


def _arguments(parameters: object, text: str) -> dict[str, str] | None:
    """A value for each required parameter found in `text`, or None when one is missing."""
    if not isinstance(parameters, dict) or not isinstance(properties := parameters.get("properties"), dict):
        return None
    required = parameters.get("required", list(properties))
    if not isinstance(required, list) or not required:
        return None
    found = {}
    for name in required:
        schema = properties.get(name)
        value = _value(name, schema if isinstance(schema, Mapping) else {}, text)
        if value is None:
            return None
        found[name] = value
    return found


def _value(parameter: str, schema: Mapping[str, object], text: str) -> str | None:
    """The first word holding a digit after the parameter's thing is named (see the module)."""
    thing = _THING.match(parameter.lower())
    if thing is None:
        return None
    named = re.search(rf"\b{thing.group('thing')}", text, re.IGNORECASE)
    if named is None:
        return None
    pattern = schema.get("pattern")
    for match in _WORD.finditer(text, named.end()):
        word = match.group().rstrip(".").lstrip("#")  # "order #10042" is order 10042
        if any(char.isdigit() for char in word) and (
            not isinstance(pattern, str) or re.search(pattern, word) is not None
        ):
            return word
    return None


def answer_from_results(messages: Sequence[ChatMessage]) -> str:
    """The part of the answer that quotes the tool results at the end of `messages`."""
    results = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        results.append(" ".join(message["content"].split()))
    quoted = "; ".join(reversed(results))[:QUOTED_CHARS]
    return f'I looked it up: "{quoted}".'


def call_deltas(calls: Sequence[ToolCallEntry]) -> Iterator[Json]:
    """The streamed `delta`s of an answer that makes `calls`: per call, its id and name first, then
    its arguments in `ARGUMENT_PIECES` fragments, as OpenAI streams them."""
    for index, call in enumerate(calls):
        function = call["function"]
        opening = {"index": index, "id": call["id"], "type": "function"}
        yield {"tool_calls": [opening | {"function": {"name": function["name"], "arguments": ""}}]}
        arguments = function["arguments"]
        size = max(1, -(-len(arguments) // ARGUMENT_PIECES))
        for start in range(0, len(arguments), size):
            piece = {"arguments": arguments[start : start + size]}
            yield {"tool_calls": [{"index": index, "function": piece}]}
