"""Keyed ordered concurrency: one FIFO lane per conversation, all lanes bounded together.

Items of one key are run one batch at a time in submission order; batches of different keys
run concurrently, at most `max_running` at once, each only once the optional gate (the LLM
circuit breaker) lets it start. A batch is what queued on the lane by the time it starts, at
most `max_batch` items: with 1, every item runs on its own. At most `max_buffered` items are
queued or running: `submit` waits for room, which is how a slow LLM slows the consumer instead
of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from app.observability import metrics

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Gate = Callable[[], Awaitable[None]]


class Lanes(Generic[Item]):
    """Per-key FIFO lanes with one bound on buffered items; owns the tasks that run them."""

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[None]],
        max_buffered: int,
        max_running: int,
        gate: Gate | None = None,
        max_batch: int = 1,
    ) -> None:
        self._run_batch, self._gate, self._max_batch = run, gate, max_batch
        self._slots = asyncio.Semaphore(max_running)
        self._room = asyncio.Semaphore(max_buffered)
        self._queues: dict[str, deque[Item]] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._buffered = 0
        self._running: dict[str, int] = {}  # key: items of its batch in work
        self._stopping = False
        self._changed = asyncio.Condition()

    @property
    def buffered(self) -> int:
        """Items queued or running now."""
        return self._buffered

    async def submit(self, key: str, item: Item) -> None:
        """Queue `item` behind earlier items of `key`; waits while the buffer is full.

        Ignored after stop().
        """
        await self._room.acquire()
        if self._stopping:
            self._room.release()
            return
        self._buffered += 1
        metrics.BUFFERED.set(self._buffered)
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(item)
            return
        self._queues[key] = deque([item])
        self._runners[key] = asyncio.create_task(self._run(key), name=f"lane:{key}")

    async def _run(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                async with self._slots:
                    if self._gate is not None:
                        await self._gate()
                    batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
                    self._running[key] = len(batch)
                    try:
                        await self._run_batch(batch)
                    except Exception:  # a batch owns its errors; this only keeps the lane alive
                        log.exception("lane batch failed", extra={"lane": key})
                    finally:
                        del self._running[key]
                        self._forget(len(batch))
        finally:
            if self._queues.get(key) is queue:  # not dropped, nor replaced by a new lane
                del self._queues[key]
                del self._runners[key]
            async with self._changed:
                self._changed.notify_all()

    def drop_queued(self) -> int:
        """Drop every item that has not started; running batches go on. Returns how many were dropped.

        A lane whose items are all dropped ends at once, even while it waits for a slot or the
        gate, so it holds neither.
        """
        dropped = 0
        for key, queue in list(self._queues.items()):
            dropped += len(queue)
            queue.clear()
            if key not in self._running:
                del self._queues[key]
                self._runners.pop(key).cancel()
        self._forget(dropped)
        return dropped

    def _forget(self, items: int) -> None:
        self._buffered -= items
        metrics.BUFFERED.set(self._buffered)
        for _ in range(items):
            self._room.release()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every submitted item has finished; False if the time ran out."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: not self._queues)
        except TimeoutError:
            return False
        return True

    async def stop(self, grace_s: float) -> int:
        """Take no more items, finish the buffered ones within `grace_s`, cancel the rest.

        Returns how many items were handed back unfinished.
        """
        self._stopping = True
        if not await self.wait_idle(grace_s):
            log.warning("grace period over; cancelling unfinished work", extra={"buffered": self._buffered})
        handed_back = sum(len(queue) for queue in self._queues.values()) + sum(self._running.values())
        await self.close()
        return handed_back

    async def close(self) -> None:
        """Cancel whatever still runs, drop what is queued, and wait for the tasks to end."""
        self._stopping = True
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self._queues.clear()
        self._buffered = 0
        metrics.BUFFERED.set(0)
