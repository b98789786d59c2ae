"""Every touch of faust's and aiokafka's internals, where they would delay or lose messages.

Each is pinned by the versions in constraints.txt (tests/kafka/test_internals.py fails when
an installed version differs, so an upgrade is checked here first) and covered by those tests:

- a shorter fetch wait: faust builds its consumer with `fetch_max_wait_ms=1500` and no setting
  to change it. Kafka answers a fetch as soon as records arrive, but on Tansu (used by
  `enricher dev` and the tests) a long wait shows in the replies: aiokafka's 500 ms put the
  reference worker's p50 at 430 ms behind a 200 ms LLM. 100 ms, measured against 20 ms in the
  same run: 7.3 against 8.5 s of CPU per 1,000 messages at 90 msg/s (4.4 against 5.1 flat
  out), the p50 the same (279 and 278 ms); a short wait has the consumer thread ask for mostly
  empty fetches;
- unreadable partitions: a record batch aiokafka cannot decode (a codec it lacks, a corrupt
  batch) raises out of `getmany` without naming its partition, and faust's fetcher crashes
  the worker on it, at every restart. Here the partition stops at that batch and is left out
  of fetching (so nothing after it is delivered or committed) and reported, while every
  other partition goes on;
- handing an event back: faust's rebalance waits for every delivered message it sees as not
  `acked`, and only `Consumer.ack` records an offset for committing (`hand_back`);
- the revoked partitions, which mode's signal passes positionally (`on_partitions_revoked`);
- draining before faust stops on a signal, which faust's `Worker._stop_on_signal` does not
  (`DrainingWorker`);
- the committed offsets, which faust keeps but does not expose, for the lag (`Consumer.lag`);
- leaving the group from generation 0: aiokafka sends LeaveGroup only from a generation
  above 0, and Tansu numbers a group's first generation 0 (Kafka starts at 1), so a worker
  that was never rebalanced would keep its partitions for a session timeout after it stopped
  (`leave_from_generation_zero`);
- three one-second waits of faust and mode on a restart, while the worker answers nothing:
  the table manager's at start, for tables to be declared (the worker declares none:
  `TablelessManager`); faust's wait at a stop or rebalance for messages that were handed
  back, which count as acked but leave its set of unacked ones only after that wait
  (`Consumer.wait_empty`); and mode's pause before it closes the event loop, with nothing
  left to run once the worker has drained (`DrainingWorker`).

The transport is registered as the `kafka-fastfetch` transport through the `faust.transports` entry point in
pyproject.toml.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiokafka
import faust
import faust.tables
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.consumer import group_coordinator as aiokafka_coordinator
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from app.kafka.partition_health import UnreadablePartitions

log = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 100
SENTINEL_S = 0.05
SCHEME = "kafka-fastfetch"
# The distributions whose internals this module touches.
PINNED = ("faust-streaming", "mode-streaming", "aiokafka")


@dataclass(frozen=True)
class UndecodableBatch:
    """A record batch of `tp` at `offset` that could not be decoded, and why."""

    tp: TP
    offset: int
    error: BaseException


# Filled by the record iterator in faust's consumer thread, emptied by the Consumer after each
# fetch: the iterator cannot reach its consumer, and a queue is safe across the two threads.
_undecodable: queue.SimpleQueue[UndecodableBatch] = queue.SimpleQueue()


def stop_partitions_at_undecodable_batches() -> None:
    """Make aiokafka stop a partition at a batch it cannot decode, instead of raising.

    aiokafka decodes a fetched batch lazily, inside `getmany`, and its errors
    (`UnsupportedCodecError`, `CorruptRecordException`, a codec's own, a header key that is
    not UTF-8) name no partition. Raised, such an error also drops the records already taken
    from other partitions in that call, whose positions have moved past them: they would never
    be delivered. Instead the record iterator ends at the batch, so the records before it are
    returned and the position stays on it; the fetch result then pauses the partition in
    aiokafka (no refetch until it is assigned anew) and queues the failure for
    `Consumer._getmany`. Installed once, by the worker's consumer.
    """
    records, result = aiokafka_fetcher.PartitionRecords, aiokafka_fetcher.FetchResult
    if getattr(records, "_stops_at_undecodable_batches", False):
        return
    next_record, take_all = records.__next__, result.getall

    def next_or_stop(self: Any) -> Any:
        try:
            return next_record(self)
        except StopIteration:
            raise
        except Exception as error:
            # next_fetch_offset is the first offset not handed out: where the batch failed.
            self.undecodable = UndecodableBatch(self._tp, self.next_fetch_offset, error)
            raise StopIteration from error

    def take_all_or_pause(self: Any, max_records: int | None = None) -> Any:
        partition_records = self._partition_records
        taken = take_all(self, max_records)
        failure = getattr(partition_records, "undecodable", None)
        if failure is not None:
            self._assignment.state_value(failure.tp).pause()
            _undecodable.put(failure)
        return taken

    records.__next__ = next_or_stop
    result.getall = take_all_or_pause
    records._stops_at_undecodable_batches = True


def leave_from_generation_zero() -> None:
    """Make aiokafka send LeaveGroup from any generation it joined, 0 included.

    aiokafka's own check is `generation > 0`; a member that never joined has generation -1.
    Static members still send none (their partitions wait for them to come back).
    """
    coordinator = aiokafka_coordinator.GroupCoordinator
    if getattr(coordinator, "_leaves_from_generation_zero", False):
        return
    leave = coordinator._maybe_leave_group

    async def maybe_leave_group(self: Any) -> None:
        if self.generation == 0 and self.member_id and self._group_instance_id is None:
            self.generation = 1  # what aiokafka's check asks for; reset by the leave itself
        await leave(self)

    coordinator._maybe_leave_group = maybe_leave_group
    coordinator._leaves_from_generation_zero = True


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Creates the worker's consumer with a short fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts its fetcher; there is no public way to set it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer on the short-wait thread, reading around unreadable partitions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unreadable = UnreadablePartitions()
        stop_partitions_at_undecodable_batches()
        leave_from_generation_zero()

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109  # faust's signature
    ) -> Any:
        readable = self.unreadable.readable(active_partitions)
        if active_partitions and not readable:
            # aiokafka reads an empty set as "every partition", the unreadable one included.
            await self.sleep(timeout)
            return {}
        records = await super()._getmany(readable, timeout)
        assigned = self.assignment()
        while not _undecodable.empty():
            batch = _undecodable.get_nowait()
            if batch.tp in assigned:  # not revoked while the fetch waited for a rebalance
                self.unreadable.add(batch.tp, batch.offset, batch.error)
        return records

    def lag(self) -> dict[TP, int]:
        """Records behind the committed offset, per assigned partition, by the last fetch's
        high-water mark; a partition not fetched yet is left out, one never committed counts
        from offset 0."""
        lags = {}
        for tp in self.assignment():
            highwater = self.highwater(tp)
            if highwater is not None and highwater >= 0:
                committed = self._committed_offset.get(tp) or 0  # faust's record of its commits
                lags[tp] = max(0, highwater - committed)
        return lags

    async def wait_empty(self) -> None:
        """faust's wait for the messages in work, which forgets the handed-back ones first."""
        self._clean_unacked_messages()
        await super().wait_empty()

    def verify_event_path(self, now: float, tp: TP) -> None:
        """faust's check that each partition is fetched, except for the paused ones: they are
        reported already, and would be logged as "no recent fetch" every few seconds."""
        if tp not in self.unreadable:
            super().verify_event_path(now, tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Forget revoked partitions; one assigned again is read (and judged) afresh."""
        self.unreadable.forget(revoked)
        await super().on_partitions_revoked(revoked)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the consumer above."""

    Consumer = Consumer


class TablelessManager(faust.tables.TableManager):
    """faust's table manager, starting without its one-second wait while no table is declared."""

    async def on_start(self) -> None:
        """faust's start (set up the tables' channels, start recovery) minus the wait."""
        if self:  # a table is declared: let faust wait for more, as it does
            await super().on_start()
            return
        await self._update_channels()
        await self.recovery.start()


def hand_back(message: faust.types.Message) -> None:
    """Stop faust waiting for this message at a rebalance without committing its offset.

    faust's rebalance waits for every message it delivered and sees as not `acked`; only
    `Consumer.ack` records an offset for committing, and that is never called for it.
    """
    message.acked = True


def on_partitions_revoked(app: faust.App, forget: Callable[[Iterable[TP]], None]) -> None:
    """Call `forget(revoked)` when partitions are revoked, before faust waits for their events."""

    async def revoked(sender: object, *args: Any, signal: object, **kwargs: Any) -> None:
        forget(args[0] if args else kwargs.get("revoked", set()))  # mode passes it positionally

    app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]  # mode types it loosely


class DrainingWorker(faust.Worker):
    """A faust worker that pauses fetching, runs `drain` and commits before faust stops on a signal."""

    def __init__(self, app: faust.App, *services: Any, drain: Callable[[], Awaitable[None]], **options: Any):
        super().__init__(app, *services, **options)
        self._drain = drain

    async def _stop_on_signal(self, signal: signal.Signals) -> None:
        # faust's own stop neither waits for the events in work nor commits what they acked last.
        log.info("signal received; draining", extra={"signal": signal.name})
        consumer = self.app.consumer
        consumer.pause_partitions(consumer.assignment())
        await self._drain()
        await consumer.commit()
        await super()._stop_on_signal(signal)

    async def _sentinel_task(self) -> None:
        # mode sleeps a second here before it closes the loop; a drained worker has nothing
        # left to run, and a restart waits for the process to end.
        await asyncio.sleep(SENTINEL_S)
