"""The feed's events routed to browsers by conversation and written as server-sent events: each
conversation's subscribers, its recent events kept for a browser that reconnects with
`Last-Event-ID`, and one subscription written as a `text/event-stream` response.

Only conversations this gateway serves (a message was posted, or a browser listens) are kept:
the topics carry every conversation's replies, and a gateway keeps none of the others.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

EventKind = Literal["chunk", "reply", "handoff"]
REPLAY_EVENTS = 512  # a few replies' chunks: what a tab may miss while it reconnects
MAX_CONVERSATIONS = 10_000
QUEUE_EVENTS = 1024
RETRY_MS = 1000  # how soon a browser reconnects after the stream drops
KEEP_ALIVE_S = 15.0  # a comment this often keeps proxies from closing an idle stream


@dataclass(frozen=True)
class Event:
    """One record for one conversation, numbered in the order the gateway read it."""

    seq: int
    kind: EventKind
    data: str
    """The record's JSON, on one line."""
    boot: str

    @property
    def id(self) -> str:
        """The SSE event id: this gateway process's boot id and the event's number."""
        return f"{self.boot}.{self.seq}"


class Subscription:
    """One browser's view of one conversation: the events it missed, then live ones until it
    goes or the gateway stops. A browser too slow to take its events is dropped; it reconnects
    and catches up from the replay buffer."""

    def __init__(self, conversation_id: str, backlog: list[Event], size: int) -> None:
        self.conversation_id = conversation_id
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(max(size, len(backlog) + 1))
        for event in backlog:
            self._queue.put_nowait(event)

    def offer(self, event: Event | None) -> None:
        """Queue `event` (None: the end); a full queue ends the subscription instead."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def events(self, wait_s: float) -> AsyncIterator[Event | None]:
        """Events as they come; None after `wait_s` without one (time for a keep-alive)."""
        while True:
            try:
                async with asyncio.timeout(wait_s):
                    event = await self._queue.get()
            except TimeoutError:
                yield None
                continue
            if event is None:
                return
            yield event


@dataclass
class _Conversation:
    recent: deque[Event] = field(default_factory=lambda: deque(maxlen=REPLAY_EVENTS))
    subscribers: set[Subscription] = field(default_factory=set)


class ConversationHub:
    """Events by conversation, to every subscriber of that conversation and no other."""

    def __init__(self, max_conversations: int = MAX_CONVERSATIONS, queue_events: int = QUEUE_EVENTS) -> None:
        self.boot = secrets.token_hex(4)
        self._max_conversations = max_conversations
        self._queue_events = queue_events
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()
        self._seq = 0

    def watch(self, conversation_id: str) -> None:
        """Keep this conversation's events from now on (the least recently used idle one goes)."""
        if conversation_id in self._conversations:
            self._conversations.move_to_end(conversation_id)
            return
        self._conversations[conversation_id] = _Conversation()
        if len(self._conversations) > self._max_conversations:
            idle = next(
                (
                    key
                    for key, c in self._conversations.items()
                    if not c.subscribers and key != conversation_id
                ),
                None,
            )
            if idle is not None:
                del self._conversations[idle]

    def publish(self, conversation_id: str, kind: EventKind, data: str) -> None:
        """Hand one record to the conversation's subscribers; dropped for one not watched."""
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            return
        self._seq += 1
        event = Event(self._seq, kind, data, self.boot)
        conversation.recent.append(event)
        for subscription in conversation.subscribers:
            subscription.offer(event)

    def subscribe(self, conversation_id: str, last_event_id: str | None) -> Subscription:
        """A subscription starting after `last_event_id`.

        Without one (a new page) nothing is replayed. An id of this process replays what came
        after it; one of another process (the gateway restarted) replays nothing: its numbers
        mean nothing here, and the page asks for the stored replies it missed instead.
        """
        self.watch(conversation_id)
        conversation = self._conversations[conversation_id]
        backlog: list[Event] = []
        boot, _, seq = (last_event_id or "").partition(".")
        if boot == self.boot and seq.isdigit():
            backlog = [event for event in conversation.recent if event.seq > int(seq)]
        subscription = Subscription(conversation_id, backlog, self._queue_events)
        conversation.subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to `subscription`."""
        conversation = self._conversations.get(subscription.conversation_id)
        if conversation is not None:
            conversation.subscribers.discard(subscription)

    def close(self) -> None:
        """End every subscription: the gateway is stopping."""
        for conversation in self._conversations.values():
            for subscription in conversation.subscribers:
                subscription.offer(None)

    @property
    def subscribers(self) -> int:
        """Browsers listening now."""
        return sum(len(c.subscribers) for c in self._conversations.values())


def frame(event: Event) -> str:
    """One event as SSE lines; `data` is one line of JSON."""
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.data}\n\n"


async def _lines(hub: ConversationHub, subscription: Subscription) -> AsyncIterator[str]:
    # The `ready` event tells the page that it is connected, and to which gateway process.
    yield f'retry: {RETRY_MS}\nevent: ready\ndata: {{"boot": "{hub.boot}"}}\n\n'
    async for event in subscription.events(KEEP_ALIVE_S):
        yield ": keep-alive\n\n" if event is None else frame(event)


class EventStream(StreamingResponse):
    """Streams one subscription until the browser goes or the gateway stops, then unsubscribes it
    and calls `release` (the stream's slot).

    The clean-up is here rather than in the body's generator: a browser that goes before the
    first event is sent cancels the generator before it starts, and its `finally` never runs.
    """

    def __init__(self, hub: ConversationHub, subscription: Subscription, release: Callable[[], None]) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering either
        super().__init__(_lines(hub, subscription), media_type="text/event-stream", headers=headers)
        self._hub = hub
        self._subscription = subscription
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._hub.unsubscribe(self._subscription)
            self._release()
