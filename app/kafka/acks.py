"""In-order acknowledgement per partition, so committed offsets never pass an unfinished event.

faust commits the highest offset of a contiguous run of acked offsets, but a gap at the
head of that run can let it commit past an event still in flight. So a
finished event is held until every earlier event of its partition has finished, and acks
are released in offset order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Partition = TypeVar("Partition", bound=Hashable)


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
