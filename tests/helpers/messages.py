"""Support requests as produced to the input topic, and what they become: the user turns of the
mock LLM's chat requests, and the text a reader of the stream topic shows."""

from __future__ import annotations

import json
from typing import Any


def request(message_id: str, conversation_id: str, text: str, **extra: Any) -> tuple[str, bytes]:
    """One input record (key, value): a customer message with `extra` fields."""
    document = {"message_id": message_id, "conversation_id": conversation_id, "text": text, **extra}
    return conversation_id, json.dumps(document).encode()


def user_texts(chat_request: dict[str, Any]) -> list[str]:
    """The user turns of a chat request the mock LLM received."""
    return [m["content"] for m in chat_request["messages"] if m["role"] == "user"]


def requests_for(requests: list[dict[str, Any]], needle: str) -> list[dict[str, Any]]:
    """The chat requests whose last user turn contains `needle`."""
    return [r for r in requests if needle in user_texts(r)[-1]]


def streamed_text(chunks: list[dict[str, Any]], message_id: str) -> str:
    """What a reader of the stream topic shows for one reply: deltas in `seq` order (which counts
    from 0 without gaps, each chunk once), from the last reset."""
    text = ""
    ordered = sorted((c for c in chunks if c["message_id"] == message_id), key=lambda c: c["seq"])
    assert [chunk["seq"] for chunk in ordered] == list(range(len(ordered)))
    for chunk in ordered:
        text = chunk["delta"] if chunk["reset"] else text + chunk["delta"]
    return text
