"""faust's aiokafka transport with a short fetch wait, so new records reach the agents at once.

faust builds its consumer with `fetch_max_wait_ms=1500` and no setting to change it. Kafka
answers a fetch as soon as data arrives, but a broker that waits the full time (Tansu, used by
`enricher dev` and the tests) would add up to 1.5 s to every reply. Registered as the
`kafka-fastfetch` transport through the `faust.transports` entry point in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_MAX_WAIT_MS = 20
SCHEME = "kafka-fastfetch"


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Creates the worker's consumer with a short fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts its fetcher; there is no public way to set it.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, on the short-wait consumer thread."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the short-wait consumer."""

    Consumer = Consumer
