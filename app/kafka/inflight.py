"""The events taken from Kafka and not finished: run on their conversation's lane, acked in
offset order per partition, and handed back unacked at a rebalance or a shutdown."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic

import faust
from faust.types import TP

from app.kafka.acks import OrderedAcks
from app.kafka.internals import hand_back
from app.kafka.lanes import Item, Lanes
from app.observability.tracing import TraceContext

log = logging.getLogger(__name__)


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
