"""Server-sent events: one subscription written as a `text/event-stream` response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.chat.hub import ConversationHub, Event, Subscription

RETRY_MS = 1000  # how soon a browser reconnects after the stream drops
KEEP_ALIVE_S = 15.0  # a comment this often keeps proxies from closing an idle stream


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
