"""The conversations a human holds, as this worker knows them from the handoff and control topics: what
decides while Redis cannot be read (promise 9).

Each worker keeps its own copy (`app.kafka.handoff_follower` feeds it every handoff, message for the
human and release, from every partition). A handoff and its release are on different topics, so
their order is the records' timestamps: the latest event of a conversation wins, whichever topic
was read first. Like `conversation:{id}:state`, a conversation is held until it is released or
nothing happens in it for `ttl_s`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

MAX_CONVERSATIONS = 100_000
"""Conversations remembered, the least recently active forgotten first: a few MB at most."""


@dataclass(frozen=True)
class _Event:
    at_s: float
    """When it happened (the record's timestamp), in seconds since the epoch."""
    held: bool


class HeldConversations:
    """Which conversations a human holds; bounded, and `ready` once the topics were read to their end."""

    def __init__(self, ttl_s: float, max_conversations: int = MAX_CONVERSATIONS) -> None:
        self._ttl_s = ttl_s
        self._max = max_conversations
        self._latest: OrderedDict[str, _Event] = OrderedDict()
        self.caught_up = asyncio.Event()
        """Set once what the topics held at start has been read."""

    def handed_over(self, conversation_id: str, at_s: float) -> None:
        """A human took the conversation at `at_s`."""
        self._apply(conversation_id, _Event(at_s, held=True))

    def active(self, conversation_id: str, at_s: float) -> None:
        """A message of a held conversation went to the human at `at_s`: it stays held for `ttl_s` more."""
        latest = self._latest.get(conversation_id)
        if latest is not None and latest.held:
            self._apply(conversation_id, _Event(at_s, held=True))

    def released(self, conversation_id: str, at_s: float) -> None:
        """The conversation was given back to the AI at `at_s`."""
        self._apply(conversation_id, _Event(at_s, held=False))

    def holds(self, conversation_id: str, now_s: float) -> bool:
        """True when a human holds it: handed over, not released since, active within `ttl_s`."""
        latest = self._latest.get(conversation_id)
        return latest is not None and latest.held and now_s - latest.at_s < self._ttl_s

    def __len__(self) -> int:
        return len(self._latest)

    def _apply(self, conversation_id: str, event: _Event) -> None:
        latest = self._latest.get(conversation_id)
        if latest is not None and latest.at_s > event.at_s:
            return  # an older event read after a newer one, from the other topic
        self._latest[conversation_id] = event
        self._latest.move_to_end(conversation_id)
        while len(self._latest) > self._max:
            self._latest.popitem(last=False)
