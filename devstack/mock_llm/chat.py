"""What the mock LLM says: a chat request as it reads it, and the deterministic reply it gives."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.tokens import ChatMessage, ToolCallEntry, count_chat, encoding_for
from devstack.mock_llm.cache import PromptCache
from devstack.mock_llm.knowledge import help_center_answer
from devstack.mock_llm.orders import order_answer
from devstack.mock_llm.state import Json
from devstack.mock_llm.structured import json_answer
from devstack.mock_llm.tools import answer_from_results, calls_for

CLOSING_SENTENCE = "Let me know if there is anything else I can help with."
_SYSTEM_ROLES = ("system", "developer")
_NAME_LINE = re.compile(r"^\s*(?:[-*]\s*)?name:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_CUSTOMER_TAG = re.compile(r"<customer_message>(.*?)</customer_message>", re.DOTALL)


@dataclass(frozen=True)
class Chat:
    """A chat completion request, as much of it as the mock reads."""

    model: str
    messages: list[ChatMessage]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    tools: tuple[object, ...] = ()
    """The declared tools, as sent (devstack/mock_llm/tools.py reads them)."""
    tool_choice: object = None
    response_format: Json | None = None
    """A JSON answer asked for (devstack/mock_llm/structured.py answers it)."""


@dataclass(frozen=True)
class Reply:
    """What the mock answers to one chat: the text or the tools it calls, why it ends, the token usage."""

    text: str
    finish_reason: str
    usage: Json
    tool_calls: tuple[ToolCallEntry, ...] = ()


def compose_reply(messages: Sequence[ChatMessage]) -> str:
    """The deterministic reply to a chat request, built so tests can see the prompt was used.

    Greets by the first `name:` line of a system message, quotes (whitespace collapsed, at most
    60 characters) the last user message or its `<customer_message>` part, answers from the first
    help-center passage that message carries, with the newest order it lists when asked about an
    order without naming one, and counts the user and assistant messages before it;
    when tool results end the chat, quotes them too.
    """
    users = [i for i, message in enumerate(messages) if message["role"] == "user"]
    last = users[-1] if users else len(messages)
    quote = " ".join(customer_text(messages).split())[:60]
    earlier = sum(1 for message in messages[:last] if message["role"] in ("user", "assistant"))
    history = f"{earlier} earlier message{'' if earlier == 1 else 's'}" if earlier else "no earlier messages"
    name = _customer_name(messages)
    looked_up = f"{answer_from_results(messages)} " if messages and messages[-1]["role"] == "tool" else ""
    known = help_center_answer(messages[last]["content"]) if users else None
    from_articles = f"{known} " if known else ""
    order = order_answer(messages[last]["content"], customer_text(messages)) if users else None
    from_orders = f"{order} " if order and not looked_up else ""
    return (
        f'{f"Hi {name}," if name else "Hi there,"} thanks for your message "{quote}". '
        f"{from_orders}{from_articles}{looked_up}I can see {history} in this conversation. {CLOSING_SENTENCE}"
    )


def customer_text(messages: Sequence[ChatMessage]) -> str:
    """What the customer wrote: the last user message, or its `<customer_message>` part."""
    latest = next((message["content"] for message in reversed(messages) if message["role"] == "user"), "")
    tagged = _CUSTOMER_TAG.search(latest)
    return tagged.group(1) if tagged else latest


def _customer_name(messages: Sequence[ChatMessage]) -> str | None:
    for message in messages:
        if message["role"] in _SYSTEM_ROLES and (found := _NAME_LINE.search(message["content"])):
            return found.group(1)
    return None


def parse_chat(body: object) -> Chat:
    """The request in `body` (parsed JSON); ValueError, worded as OpenAI's, when it is malformed."""
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    model, raw_messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise ValueError("you must provide a model parameter")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ValueError("'messages' must be a non-empty array")
    options = body.get("stream_options")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return Chat(
        model=model,
        messages=[_parse_message(raw) for raw in raw_messages],
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        max_tokens=limit if isinstance(limit, int) and limit > 0 else None,
        tools=tuple(tools) if isinstance(tools := body.get("tools"), list) else (),
        tool_choice=body.get("tool_choice"),
        response_format=answer_format
        if isinstance(answer_format := body.get("response_format"), dict)
        else None,
    )


def _parse_message(raw: object) -> ChatMessage:
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise ValueError("each message must be an object with a 'role'")
    content = raw.get("content")
    if isinstance(content, list):  # content parts: only the text ones count
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    message: ChatMessage = {"role": raw["role"], "content": content if isinstance(content, str) else ""}
    # Kept for the record, so tests can see what the tool-calling loop sent.
    if isinstance(call_id := raw.get("tool_call_id"), str):
        message["tool_call_id"] = call_id
    if isinstance(calls := raw.get("tool_calls"), list):
        message["tool_calls"] = calls
    return message


def reply_to(chat: Chat, cache: PromptCache, scripted: str | None = None) -> Reply:
    """The reply to `chat` (or the `scripted` text, `{system}` standing for the system part), cut to
    its `max_tokens`, with usage and the cached part of the prompt."""
    encoding = encoding_for(chat.model)
    calling = chat.messages[-1]["role"] != "tool" and chat.tool_choice != "none"
    calls = calls_for(chat.tools, customer_text(chat.messages)) if scripted is None and calling else []
    if calls:
        text = "".join(call["function"]["name"] + call["function"]["arguments"] for call in calls)
        return Reply("", "tool_calls", _usage(chat, len(encoding.encode(text))), tuple(calls))
    if scripted is None:
        text = compose_reply(chat.messages)
        if chat.response_format is not None:
            text = json_answer(chat.response_format, text) or text
    else:
        system = "\n".join(m["content"] for m in chat.messages if m["role"] == "system")
        text = scripted.replace("{system}", system)
    tokens = encoding.encode(text, disallowed_special=())
    finish = "stop"
    if chat.max_tokens is not None and len(tokens) > chat.max_tokens:
        tokens, finish = tokens[: chat.max_tokens], "length"
        text = encoding.decode(tokens)
    return Reply(text, finish, _usage(chat, len(tokens)) | cache.details(chat.model, chat.messages))


def _usage(chat: Chat, completion_tokens: int) -> Json:
    prompt = count_chat(chat.messages, chat.model)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
