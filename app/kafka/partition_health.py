"""The health of the worker's partitions: the ones it cannot read (left out of fetching, logged,
counted and shown in /readyz), and the consumer lag as a metric (how far the worker's committed
offsets are behind each partition)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass

from faust.types import TP

from app.observability import metrics

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Unreadable:
    """Why one partition stopped: the offset of the batch that could not be decoded, and the error."""

    offset: int
    reason: str


class UnreadablePartitions:
    """The partitions whose next record batch could not be decoded.

    Such a partition is paused where it stands: nothing after the batch is delivered, so
    nothing is committed past it, and it is read again only when it is assigned anew (after
    a rebalance or a restart, with the codec installed or the batch repaired).
    """

    def __init__(self) -> None:
        self._stopped: dict[TP, Unreadable] = {}

    def add(self, tp: TP, offset: int, cause: BaseException | None) -> None:
        """Pause `tp` at `offset`, and say so in the log and the metrics (once per batch)."""
        stopped = Unreadable(offset, _describe(cause))
        if self._stopped.get(tp) == stopped:
            return
        self._stopped[tp] = stopped
        reason = stopped.reason
        metrics.PARTITIONS_UNREADABLE.labels(tp.topic, str(tp.partition)).set(1)
        log.error(
            "partition paused: a record batch cannot be decoded",
            extra={"topic": tp.topic, "partition": tp.partition, "offset": offset, "error": reason},
        )

    def forget(self, partitions: Iterable[TP]) -> None:
        """The partitions are no longer ours: whoever reads them next judges them afresh."""
        for tp in partitions:
            if self._stopped.pop(tp, None) is not None:
                metrics.PARTITIONS_UNREADABLE.remove(tp.topic, str(tp.partition))

    def __contains__(self, tp: object) -> bool:
        return tp in self._stopped

    def readable(self, partitions: Set[TP] | None) -> set[TP] | None:
        """`partitions` without the paused ones (None, all partitions, stays None)."""
        if partitions is None:
            return None
        return {tp for tp in partitions if tp not in self._stopped}

    def reasons(self) -> dict[str, str]:
        """`topic[partition]` → where and why it stopped, for /readyz."""
        return {
            f"{tp.topic}[{tp.partition}]": f"paused at offset {stopped.offset}: {stopped.reason}"
            for tp, stopped in sorted(self._stopped.items())
        }


class LagReport:
    """Sets `enricher_kafka_consumer_lag` for the assigned partitions; drops the revoked ones.

    `lags` is the worker's `Consumer.lag` (app.kafka.internals), passed in as a function because
    that module imports this one.
    """

    def __init__(self, lags: Callable[[], dict[TP, int]]) -> None:
        self._lags = lags
        self._reported: set[TP] = set()

    def update(self) -> None:
        """Report the lag of every assigned partition now."""
        lags = self._lags()
        for tp, lag in lags.items():
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        for gone in self._reported - lags.keys():
            metrics.CONSUMER_LAG.remove(gone.topic, str(gone.partition))
        self._reported = set(lags)


def _describe(cause: BaseException | None) -> str:
    if cause is None:
        return "undecodable record batch"
    name, text = type(cause).__name__, str(cause)
    return text if text.startswith(name) else f"{name}: {text}"  # aiokafka's errors name themselves
