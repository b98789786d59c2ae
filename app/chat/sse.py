"""Server-sent events: one subscription written as a `text/event-stream` response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse

from app.chat.hub import ConversationHub, Event, Subscription

RETRY_MS = 1000  # how soon a browser reconnects after the stream drops
KEEP_ALIVE_S = 15.0  # a comment this often keeps proxies from closing an idle stream


def frame(event: Event) -> str:
    """One event as SSE lines; `data` is one line of JSON."""
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.data}\n\n"


async def _lines(
    hub: ConversationHub, subscription: Subscription, release: Callable[[], None]
) -> AsyncIterator[str]:
    try:
        # The `ready` event tells the page that it is connected, and to which gateway process.
        yield f'retry: {RETRY_MS}\nevent: ready\ndata: {{"boot": "{hub.boot}"}}\n\n'
        async for event in subscription.events(KEEP_ALIVE_S):
            yield ": keep-alive\n\n" if event is None else frame(event)
    finally:
        hub.unsubscribe(subscription)
        release()


def event_stream(
    hub: ConversationHub, subscription: Subscription, release: Callable[[], None]
) -> StreamingResponse:
    """The response that streams `subscription` until the browser goes or the gateway stops, then
    calls `release` (the stream's slot)."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering either
    return StreamingResponse(
        _lines(hub, subscription, release), media_type="text/event-stream", headers=headers
    )
