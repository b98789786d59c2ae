"""Keyed ordered concurrency: one FIFO lane per conversation, all lanes bounded together.

Jobs of one key run one at a time in submission order; jobs of different keys run
concurrently, at most `max_running` at once, each only once the optional gate (the LLM
circuit breaker) lets it start. At most `max_buffered` jobs are queued or running: `submit`
waits for room, which is how a slow LLM slows the consumer instead of filling memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from app.observability import metrics

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
Gate = Callable[[], Awaitable[None]]


class Lanes:
    """Per-key FIFO lanes with one bound on buffered jobs; owns the tasks that run them."""

    def __init__(self, max_buffered: int, max_running: int, gate: Gate | None = None) -> None:
        self._gate = gate
        self._slots = asyncio.Semaphore(max_running)
        self._room = asyncio.Semaphore(max_buffered)
        self._queues: dict[str, deque[Job]] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._buffered = 0
        self._running: set[str] = set()
        self._stopping = False
        self._changed = asyncio.Condition()

    @property
    def buffered(self) -> int:
        """Jobs queued or running now."""
        return self._buffered

    async def submit(self, key: str, job: Job) -> None:
        """Queue `job` behind earlier jobs of `key`; waits while the buffer is full; ignored after stop()."""
        await self._room.acquire()
        if self._stopping:
            self._room.release()
            return
        self._buffered += 1
        metrics.BUFFERED.set(self._buffered)
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        self._runners[key] = asyncio.create_task(self._run(key), name=f"lane:{key}")

    async def _run(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                async with self._slots:
                    if self._gate is not None:
                        await self._gate()
                    self._running.add(key)
                    try:
                        await queue[0]()
                    except Exception:  # a job owns its errors; this only keeps the lane alive
                        log.exception("lane job failed", extra={"lane": key})
                    finally:
                        self._running.discard(key)
                        queue.popleft()
                        self._forget(1)
        finally:
            if self._queues.get(key) is queue:  # not dropped, nor replaced by a new lane
                del self._queues[key]
                del self._runners[key]
            async with self._changed:
                self._changed.notify_all()

    def drop_queued(self) -> int:
        """Drop every job that has not started; running jobs go on. Returns how many were dropped.

        A lane whose jobs are all dropped ends at once, even while it waits for a slot or the
        gate, so it holds neither.
        """
        dropped = 0
        for key, queue in list(self._queues.items()):
            running = key in self._running
            while len(queue) > (1 if running else 0):
                queue.pop()
                dropped += 1
            if not running:
                del self._queues[key]
                self._runners.pop(key).cancel()
        self._forget(dropped)
        return dropped

    def _forget(self, jobs: int) -> None:
        self._buffered -= jobs
        metrics.BUFFERED.set(self._buffered)
        for _ in range(jobs):
            self._room.release()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every submitted job has finished; False if the time ran out."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: not self._queues)
        except TimeoutError:
            return False
        return True

    async def stop(self, grace_s: float) -> int:
        """Take no more jobs, finish the buffered ones within `grace_s`, cancel the rest.

        Returns how many jobs were handed back unfinished.
        """
        self._stopping = True
        if not await self.wait_idle(grace_s):
            log.warning("grace period over; cancelling unfinished jobs", extra={"buffered": self._buffered})
        handed_back = sum(len(queue) for queue in self._queues.values())
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
