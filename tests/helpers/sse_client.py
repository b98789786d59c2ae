"""A browser's event stream, as a test reads it: httpx in a task, collecting every event it gets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event, its data decoded from JSON."""

    id: str
    kind: str
    data: dict[str, Any]


@dataclass
class SseClient:
    """`async with SseClient(url)` listens until the block ends; `events` fills as they come."""

    url: str
    last_event_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[SseEvent] = field(default_factory=list)
    retry_ms: int | None = None
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._listen())
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._task}, timeout=10.0, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()  # the stream failed: raise why
        assert self._ready.is_set(), f"no `ready` event from {self.url}"
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        headers = self.headers | ({"Last-Event-ID": self.last_event_id} if self.last_event_id else {})
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as client,
            client.stream("GET", self.url, headers=headers) as response,
        ):
            response.raise_for_status()
            assert response.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "retry" in fields:
                    self.retry_ms = int(fields["retry"])
                if fields.get("event") == "ready":
                    self._ready.set()
                elif "data" in fields:
                    self.events.append(
                        SseEvent(fields.get("id", ""), fields["event"], json.loads(fields["data"]))
                    )
                fields = {}

    async def wait_for(
        self, done: Callable[[list[SseEvent]], bool], timeout_s: float = 15.0
    ) -> list[SseEvent]:
        """The events once `done(events)` holds; AssertionError with what came after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while not done(self.events):
            assert time.monotonic() < deadline, f"gave up waiting; events: {self.events}"
            await asyncio.sleep(0.05)
        return self.events
