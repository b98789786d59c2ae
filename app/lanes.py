"""Keyed ordered concurrency: one FIFO lane per conversation, all lanes bounded together.

Jobs of one key run one at a time in submission order; jobs of different keys run
concurrently. At most `max_buffered` jobs are queued or running at once: `submit` waits
for room, which is how a slow LLM slows the consumer instead of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from app import metrics

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class Lanes:
    """Per-key FIFO lanes with one bound on buffered jobs; owns the tasks that run them."""

    def __init__(self, max_buffered: int) -> None:
        self._room = asyncio.Semaphore(max_buffered)
        self._queues: dict[str, deque[Job]] = {}
        self._runners: set[asyncio.Task[None]] = set()
        self._buffered = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def buffered(self) -> int:
        """Jobs queued or running now."""
        return self._buffered

    async def submit(self, key: str, job: Job) -> None:
        """Queue `job` behind earlier jobs of `key`; waits while the buffer is full."""
        await self._room.acquire()
        self._buffered += 1
        metrics.BUFFERED.set(self._buffered)
        self._idle.clear()
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        runner = asyncio.create_task(self._run(key), name=f"lane:{key}")
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    async def _run(self, key: str) -> None:
        queue = self._queues[key]
        while queue:
            job = queue[0]
            try:
                await job()
            except Exception:  # a job owns its errors; this only keeps the lane alive
                log.exception("lane job failed", extra={"lane": key})
            finally:
                queue.popleft()
                self._buffered -= 1
                metrics.BUFFERED.set(self._buffered)
                self._room.release()
        del self._queues[key]
        if not self._queues:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted job has finished; False if the time ran out."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Cancel whatever still runs and wait for the tasks to end."""
        runners = list(self._runners)
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        self._queues.clear()
