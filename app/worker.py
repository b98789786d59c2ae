"""`enricher worker`: wires settings, clients, agents and pages into one faust worker process."""

from __future__ import annotations

import functools
import gc
import logging
from typing import Any, cast

import faust
import mode.loop
from faust.types import AppT
from mode import Service

from agents.control import ControlAgent
from agents.orders import OrderAgent
from agents.profiles import ProfileAgent
from agents.support_reply import LaneLimits, SupportAgent
from app import pipeline
from app.errors import EXIT_CONFIG, TemplateError, fail
from app.handoff import HandoffFollower
from app.kafka.faust_app import build_app, declare_topics
from app.kafka.inflight import InFlight
from app.kafka.internals import Consumer, DrainingWorker
from app.kafka.outbox import DeadLetters, Outbox, Publisher
from app.kafka.partition_health import LAG_INTERVAL_S, LagReport
from app.llm.health import LLMHealth
from app.observability.health import Health, attach_pages
from app.observability.logs import Redactor, logging_config, secrets_of
from app.resources import Resources
from app.settings import Settings

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000

# Messages answered by one reply at most, when they queued behind a reply being made: a
# customer's burst is a few lines; a longer backlog is answered in several replies.
MAX_ANSWERED_TOGETHER = 10


class Runtime(Service):
    """Watches the prompt templates and the help-center and follows the handoff topics while the
    worker runs; outlives the faust app, then closes the clients."""

    def __init__(self, resources: Resources) -> None:
        super().__init__()
        self._resources = resources

    async def on_start(self) -> None:
        self.add_future(self._resources.prompts.watch())
        self.add_future(self._resources.knowledge.watch())
        self.add_future(HandoffFollower(self._resources.settings, self._resources.held).run())

    async def on_stop(self) -> None:
        await self._resources.aclose()


class RebalanceSensor(faust.Sensor):
    """Hands back the events not started yet when a rebalance starts, before faust waits for them."""

    def __init__(self, inflight: InFlight[Any]) -> None:
        super().__init__()
        self._inflight = inflight

    def on_rebalance_start(self, app: AppT) -> dict[str, object]:
        self._inflight.hand_back_queued()
        state: dict[str, object] = super().on_rebalance_start(app)
        return state


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
    llm: LLMHealth = resources.llm  # the worker waits on the LLM's breaker, never steers it
    app = build_app(settings)
    topics = declare_topics(app, settings)

    def assigned_input_partitions() -> int:
        return sum(1 for tp in app.consumer.assignment() if tp.topic == settings.input_topic)

    publisher = Publisher()
    dead_letters = DeadLetters(
        functools.partial(publisher.deliver, topics.dead_letters), Redactor(secrets_of(settings))
    )
    limits = LaneLimits(
        settings.max_buffered,
        running_jobs(settings.max_in_flight),
        gate=llm.admit,
        max_batch=MAX_ANSWERED_TOGETHER if settings.coalesce == "queued" else 1,
    )
    answer = functools.partial(pipeline.answer, resources)
    outbox = Outbox(topics, dead_letters, resources.context.mark_published)
    agent = SupportAgent(answer, settings.max_input_chars, topics.requests, outbox, app.crash, limits)
    agent.attach(app)
    inflight = agent.inflight
    app.sensors.add(RebalanceSensor(inflight))
    ProfileAgent(resources.context, topics, dead_letters).attach(app)
    OrderAgent(resources.context, topics, dead_letters).attach(app)
    ControlAgent(resources.context, topics, dead_letters).attach(app)

    def unreadable_partitions() -> dict[str, str]:
        return cast(Consumer, app.consumer).unreadable.reasons()

    signals_problem = resources.signals.problem if resources.signals is not None else None
    health = Health(
        resources.llm,
        resources.context.ping,
        signals_problem,
        resources.knowledge.problem,
        assigned_input_partitions,
        unreadable_partitions,
    )
    attach_pages(app, health)
    lag = LagReport(cast(Consumer, app.consumer).lag)

    async def report_lag() -> None:
        lag.update()

    app.timer(LAG_INTERVAL_S)(report_lag)

    collect_garbage_less_often()

    async def drain() -> None:
        # Queued events could only wait at an open breaker until the grace ran out.
        await inflight.drain(settings.shutdown_grace_s, hand_back_queued=llm.failing is not None)

    DrainingWorker(
        app,
        Runtime(resources),
        drain=drain,
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
        redirect_stdouts=False,
    ).execute_from_commandline()
