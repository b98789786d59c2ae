"""A stored reply and the history turns it adds, as the context store keeps them."""

from __future__ import annotations

from app.schemas import HistoryTurn, PromptRef, Reply, Usage, reply_id_for

AT = "2026-11-25T04:00:00.000Z"


def reply(message_id: str, text: str, conversation_id: str = "c-1") -> Reply:
    """An `ok` reply to `message_id` with `text`."""
    return Reply(
        reply_id=reply_id_for(message_id),
        message_id=message_id,
        conversation_id=conversation_id,
        text=text,
        status="ok",
        model="gpt-4o-mini",
        prompt=PromptRef(name="support_reply", version="abc"),
        usage=Usage(),
        latency_ms=1,
        created_at=AT,
    )


def turns(message_id: str, text: str, conversation_id: str = "c-1") -> list[HistoryTurn]:
    """The customer's question and the agent's `text`: the two turns one reply adds."""
    return [
        HistoryTurn(
            role="customer", text="question", message_id=message_id, at=AT, conversation_id=conversation_id
        ),
        HistoryTurn(role="agent", text=text, message_id=message_id, at=AT, conversation_id=conversation_id),
    ]
