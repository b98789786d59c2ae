"""`enricher worker`: wires settings, clients, agents and pages into one faust worker process."""

from __future__ import annotations

import functools
import gc
import logging
import signal
from typing import cast

import faust
import mode.loop
from faust.types import AppT
from mode import Service

from agents.profiles import ProfileAgent
from agents.support_reply import SupportAgent
from app.errors import TemplateError
from app.exits import EXIT_CONFIG, fail
from app.kafka import internals as kafka_transport
from app.kafka.dlq import DeadLetters
from app.kafka.faust_app import build_app, declare_topics
from app.kafka.lanes import Lanes
from app.kafka.publisher import Publisher
from app.observability.health import Health, attach_pages
from app.observability.logs import logging_config, secrets_of
from app.observability.redaction import Redactor
from app.resources import Resources
from app.settings import Settings

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000


class Runtime(Service):
    """Watches the prompt templates while the worker runs; outlives the faust app, then closes the clients."""

    def __init__(self, resources: Resources) -> None:
        super().__init__()
        self._resources = resources

    async def on_start(self) -> None:
        self.add_future(self._resources.prompts.watch())

    async def on_stop(self) -> None:
        await self._resources.aclose()


class RebalanceSensor(faust.Sensor):
    """Tells the support agent when a rebalance starts, before faust waits for its events."""

    def __init__(self, support: SupportAgent) -> None:
        super().__init__()
        self._support = support

    def on_rebalance_start(self, app: AppT) -> dict[str, object]:
        self._support.hand_back_queued()
        state: dict[str, object] = super().on_rebalance_start(app)
        return state


class EnricherWorker(faust.Worker):
    """A faust worker that drains the support agent before faust stops on SIGTERM/SIGINT."""

    def __init__(self, app: faust.App, support: SupportAgent, settings: Settings, *services: Service) -> None:
        super().__init__(
            app,
            *services,
            loglevel=settings.log_level,
            logging_config=logging_config(settings),
            quiet=True,
            redirect_stdouts=False,
        )
        self._support = support
        self._grace_s = settings.shutdown_grace_s

    async def _stop_on_signal(self, signal: signal.Signals) -> None:
        # faust's own stop neither waits for our lanes nor commits what they acked last,
        # so stop fetching, drain within the grace period and commit first.
        log.info("signal received; draining", extra={"signal": signal.name, "grace_s": self._grace_s})
        consumer = self.app.consumer
        consumer.pause_partitions(consumer.assignment())
        await self._support.drain(self._grace_s)
        await consumer.commit()
        await super()._stop_on_signal(signal)


def running_jobs(max_in_flight: int) -> int:
    """How many messages may be worked on at once: twice the LLM calls in flight, so that while
    one half waits on the LLM the other reads its context, renders its prompt or publishes.

    A message's LLM deadline starts when it runs, so it is spent behind at most one round of
    calls, not a whole backlog; and when the LLM goes down no more than these reach the
    fallback before the circuit breaker holds the rest. (Fewer cost more CPU per reply.)
    """
    return 2 * max_in_flight


def collect_garbage_less_often() -> None:
    """Spend less CPU on garbage collection (8% of the worker's at full load, before this).

    Everything built at start (modules, faust, templates) is moved out of the collector's
    reach, and young collections wait for GC_YOUNG_THRESHOLD new objects instead of CPython's
    700: a reply allocates thousands of short-lived ones.
    """
    gc.collect()  # start-up's garbage is freed, not frozen
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; exits 2 when a prompt template is broken at start."""
    # uvloop's event loop roughly halves the loop's own share of the worker's CPU.
    mode.loop.use("uvloop")
    try:
        resources = Resources.build(settings)
    except TemplateError as error:
        fail(f"prompt template error: {error}", EXIT_CONFIG)
    app = build_app(settings)
    topics = declare_topics(app, settings)

    def assigned_input_partitions() -> int:
        return sum(1 for tp in app.consumer.assignment() if tp.topic == settings.input_topic)

    publisher = Publisher()
    dead_letters = DeadLetters(
        functools.partial(publisher.deliver, topics.dead_letters), Redactor(secrets_of(settings))
    )
    running = running_jobs(settings.max_in_flight)
    lanes = Lanes(settings.max_buffered, running, gate=resources.llm.breaker.admit)
    support = SupportAgent(resources, topics, lanes, dead_letters, app.crash)
    support.attach(app)
    app.sensors.add(RebalanceSensor(support))
    ProfileAgent(resources.context, topics, dead_letters).attach(app)

    def unreadable_partitions() -> dict[str, str]:
        return cast(kafka_transport.Consumer, app.consumer).unreadable.reasons()

    attach_pages(app, Health(resources, assigned_input_partitions, unreadable_partitions))
    collect_garbage_less_often()
    EnricherWorker(app, support, settings, Runtime(resources)).execute_from_commandline()
