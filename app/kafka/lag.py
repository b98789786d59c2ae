"""Consumer lag as a metric: how far the worker's committed offsets are behind each partition."""

from __future__ import annotations

from faust.types import TP

from app.kafka.internals import Consumer
from app.observability import metrics

LAG_INTERVAL_S = 5.0


class LagReport:
    """Sets `enricher_kafka_consumer_lag` for the assigned partitions; drops the revoked ones."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._reported: set[TP] = set()

    def update(self) -> None:
        """Report the lag of every assigned partition now."""
        lags = self._consumer.lag()
        for tp, lag in lags.items():
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        for gone in self._reported - lags.keys():
            metrics.CONSUMER_LAG.remove(gone.topic, str(gone.partition))
        self._reported = set(lags)
