"""The events taken from Kafka and not finished, from take to ack: each runs on its
conversation's lane, is acked in offset order per partition, and is handed back unacked at a
rebalance or a shutdown.

The lanes are keyed ordered concurrency: one FIFO lane per conversation, all lanes bounded
together. Items of one key are run one batch at a time in submission order; batches of different
keys run concurrently, at most `max_running` at once, each only once the optional gate (the LLM
circuit breaker) lets it start. A batch is what queued on the lane by the time it starts, at
most `max_batch` items: with 1, every item runs on its own. At most `max_buffered` items are
queued or running: `submit` waits for room, which is how a slow LLM slows the consumer instead
of filling memory.

The acks are in order per partition, so committed offsets never pass an unfinished event: faust
commits the highest offset of a contiguous run of acked offsets, but a gap at the head of that
run can let it commit past an event still in flight. So a finished event is held until every
earlier event of its partition has finished, and acks are released in offset order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import faust
from faust.types import TP

from app.kafka.internals import hand_back
from app.observability import metrics
from app.observability.tracing import TraceContext

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Gate = Callable[[], Awaitable[None]]
Partition = TypeVar("Partition", bound=Hashable)


@dataclass(frozen=True)
class Taken:
    """An event as it was taken: when, and in which trace its records go on."""

    event: faust.EventT[bytes]
    started: float
    trace: TraceContext


class InFlight(Generic[Item]):
    """Tracks each event from `take` to `finish`, so a committed offset never passes an unfinished one."""

    def __init__(self, lanes: Lanes[Item]) -> None:
        self._lanes = lanes
        self._acks: OrderedAcks[TP] = OrderedAcks()
        self._closing = False

    def take(self, event: faust.EventT[bytes]) -> Taken | None:
        """Track a new event; None once draining, when it is handed back for the restart instead."""
        message = event.message
        if self._closing:
            hand_back(message)
            return None
        self._acks.track(message.tp, message.offset, event.ack, functools.partial(hand_back, message))
        return Taken(event, time.monotonic(), TraceContext.of(message.headers))

    async def submit(self, conversation_id: str, item: Item) -> None:
        """Queue `item` on the conversation's lane; waits while the buffer is full."""
        await self._lanes.submit(conversation_id, item)

    def start(self, event: faust.EventT[bytes]) -> None:
        """The event's work began: it is no longer handed back at a rebalance."""
        self._acks.start(event.message.tp, event.message.offset)

    def finish(self, event: faust.EventT[bytes]) -> None:
        """Everything for the event is published: ack it once the ones before it are."""
        self._acks.finish(event.message.tp, event.message.offset)

    def forget(self, revoked: Iterable[TP]) -> None:
        """Partitions were revoked: their events are no longer ours to ack."""
        self._acks.forget(revoked)

    def hand_back_queued(self) -> None:
        """At a rebalance: give up the events not started yet, so the rebalance waits only for
        calls in flight (each bounded by the LLM deadline), not for whole queues behind them.

        They are redelivered from the committed offset to whichever worker gets the partition.
        """
        dropped = self._lanes.drop_queued()
        released = self._acks.release_unstarted()
        if dropped or released:
            log.info("rebalance: queued events handed back", extra={"dropped": dropped, "released": released})

    async def drain(self, grace_s: float, *, hand_back_queued: bool = False) -> None:
        """Take no more events; finish the ones in work within `grace_s`; hand back the rest.

        With `hand_back_queued` (the LLM is down: they could only wait out the grace), the
        queued ones are handed back at once. What is handed back stays unacked, so the next
        owner of the partition gets it.
        """
        self._closing = True
        if hand_back_queued:
            self.hand_back_queued()
        await self._lanes.stop(grace_s)
        log.info("drained", extra={"handed_back": self._acks.release_all()})


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


@dataclass
class _Slot:
    offset: int
    ack: Callable[[], object]
    give_up: Callable[[], object]
    started: bool = False
    finished: bool = False


@dataclass
class OrderedAcks(Generic[Partition]):
    """Tracks events per partition in arrival (offset) order and acks finished prefixes."""

    _pending: dict[Partition, deque[_Slot]] = field(default_factory=dict)

    def track(
        self, partition: Partition, offset: int, ack: Callable[[], object], give_up: Callable[[], object]
    ) -> None:
        """Register an event as it is taken from the stream.

        `ack` is called when its turn comes; `give_up` if it is released unfinished instead.
        """
        self._pending.setdefault(partition, deque()).append(_Slot(offset, ack, give_up))

    def start(self, partition: Partition, offset: int) -> None:
        """Mark an event as being worked on; `release_unstarted` keeps it."""
        for slot in self._pending.get(partition, ()):
            if slot.offset == offset:
                slot.started = True
                return

    def release_unstarted(self) -> int:
        """Give up every event from the first unstarted one of each partition on, unacked.

        Those events are redelivered from the committed offset; the ones after them that
        still finish are never acked. Returns how many events were released.
        """
        released = 0
        for slots in self._pending.values():
            first = next((i for i, s in enumerate(slots) if not (s.started or s.finished)), len(slots))
            released += self._give_up(slots, keep=first)
        return released

    def release_all(self) -> int:
        """Give up every event not acked yet (at shutdown, after the last ones finished)."""
        return sum(self._give_up(slots, keep=0) for slots in self._pending.values())

    @staticmethod
    def _give_up(slots: deque[_Slot], keep: int) -> int:
        released = len(slots) - keep
        for _ in range(released):
            slots.pop().give_up()
        return released

    def finish(self, partition: Partition, offset: int) -> int:
        """Mark an event finished; ack every finished event at the head. Returns how many acked."""
        slots = self._pending.get(partition)
        if not slots:
            return 0
        for slot in slots:
            if slot.offset == offset:
                slot.finished = True
                break
        acked = 0
        while slots and slots[0].finished:
            slots.popleft().ack()
            acked += 1
        return acked

    def unfinished(self, partition: Partition) -> int | None:
        """The offset of the oldest unfinished event of the partition, if any."""
        slots = self._pending.get(partition)
        return slots[0].offset if slots else None

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Drop revoked partitions: their events are redelivered to the new owner."""
        for partition in partitions:
            self._pending.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(slots) for slots in self._pending.values())
