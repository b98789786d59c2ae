"""The support agent: parse each request, answer it on its conversation's lane (with what queued
behind it, when coalescing), publish, ack in order.

What becomes of a message (its fate, `app.fate`) is decided in `app.pipeline.answer`, or here
for bad input; `app.kafka.outbox` puts that fate on the topics; this file acks it in order and
counts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import assert_never, cast

import faust

from app.errors import BadInput
from app.fate import (
    AlreadyPublished,
    Answered,
    Covered,
    DeadLettered,
    Failure,
    Fallback,
    Fate,
    HandedOver,
    Replayed,
    ToHuman,
)
from app.kafka.inflight import Gate, InFlight, Lanes, Taken
from app.kafka.internals import on_partitions_revoked
from app.kafka.outbox import ChunkPublisher, Outbox
from app.llm.client import DeltaSink
from app.observability import metrics
from app.observability.logs import bind
from app.pipeline import SinkFor
from app.schemas import CustomerMessage, parse_message

log = logging.getLogger(__name__)

Answer = Callable[[Sequence[CustomerMessage], SinkFor], Awaitable[list[Fate]]]
"""Fates, one per message, of messages of one conversation answered together (app.pipeline)."""


@dataclass(frozen=True)
class Queued:
    """A valid request on its conversation's lane, and the event it came in."""

    request: CustomerMessage
    taken: Taken


@dataclass(frozen=True)
class LaneLimits:
    """How much work the agent holds (see `app.kafka.inflight.Lanes`)."""

    max_buffered: int
    max_running: int
    gate: Gate | None = None
    max_batch: int = 1
    """1: each message is answered on its own; more: what queued behind a reply, together."""


class SupportAgent:
    """Turns each event of the request topic into the records its fate calls for."""

    def __init__(
        self,
        answer: Answer,
        max_input_chars: int,
        requests: faust.TopicT,
        outbox: Outbox,
        crash: Callable[[BaseException], Awaitable[None]],
        limits: LaneLimits,
    ) -> None:
        self._answer, self._max_input_chars = answer, max_input_chars
        self._requests, self._outbox, self._crash = requests, outbox, crash
        lanes = Lanes(self._run, limits.max_buffered, limits.max_running, limits.gate, limits.max_batch)
        self.inflight: InFlight[Queued] = InFlight(lanes)

    def attach(self, app: faust.App) -> None:
        """Register the agent on the app and forget revoked partitions on rebalance."""
        app.agent(self._requests, name="support_reply")(self._consume)
        on_partitions_revoked(app, self.inflight.forget)

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        async for event in cast(faust.Stream[bytes], stream).noack().events():
            await self.dispatch(event)

    async def dispatch(self, event: faust.EventT[bytes]) -> None:
        """Validate one event and queue it on its lane; bad input goes to the DLQ at once."""
        taken = self.inflight.take(event)
        if taken is None:
            return
        metrics.CONSUMED.inc()
        message = event.message
        bind(trace_id=taken.trace.trace_id)
        try:
            request = parse_message(message.value, self._max_input_chars, message.headers)
        except BadInput as error:
            await self._settle([(taken, DeadLettered(Failure.of(error)))], {})
            return
        await self.inflight.submit(request.conversation_id, Queued(request, taken))

    async def _run(self, queued: Sequence[Queued]) -> None:
        """Answer what queued on one conversation's lane, together as far as a prompt holds."""
        for group in answerable_together(queued, self._max_input_chars):
            await self._answer_group(group)

    async def _answer_group(self, group: Sequence[Queued]) -> None:
        for item in group:
            self.inflight.start(item.taken.event)
        last = group[-1].request
        bind(message_id=last.message_id, conversation_id=last.conversation_id)
        traces = {item.request.message_id: item.taken.trace for item in group}
        chunks: dict[str, ChunkPublisher] = {}

        def sink_for(request: CustomerMessage) -> DeltaSink:
            publisher = self._outbox.chunks_for(request, traces[request.message_id])
            return chunks.setdefault(request.message_id, publisher)

        fates = await self._answer([item.request for item in group], sink_for)
        await self._settle([(item.taken, fate) for item, fate in zip(group, fates, strict=True)], chunks)

    async def _settle(
        self, settled: Sequence[tuple[Taken, Fate]], chunks: Mapping[str, ChunkPublisher]
    ) -> None:
        """Publish what each fate calls for, then ack them; when the broker takes none of it, stop.

        Every record goes out before any of the events is acked: an event whose reply a later
        event of its batch publishes is never committed before that reply is out.
        """
        try:
            for taken, fate in settled:
                await self._outbox.publish(taken.event.message, fate, taken.trace, chunks)
        except Exception as error:  # escaping would ack the events and kill the agent
            # Nothing was produced for these messages, so they must not be acked, and every later
            # message of their partitions waits behind them: stop, and let a restart redeliver.
            log.critical(
                "broker refused both the reply and the dead letter; stopping the worker", exc_info=error
            )
            await self._crash(error)
            return
        for taken, fate in settled:
            self.inflight.finish(taken.event)
            _count(fate, taken)


def _count(fate: Fate, taken: Taken) -> None:
    """Count a settled message in the metrics: its fate, and how long its reply took."""
    metrics.MESSAGES.labels(fate.label).inc()
    match fate:
        case Answered() | Fallback() | HandedOver() | Replayed():  # the reply's broker ack just came
            metrics.REPLY_LATENCY.observe(time.monotonic() - taken.started)
            metrics.END_TO_END.observe(max(0.0, time.time() - taken.event.message.timestamp))
        case AlreadyPublished() | Covered():  # answered, by a reply published before or beside it
            metrics.REPLY_LATENCY.observe(time.monotonic() - taken.started)
        case ToHuman() | DeadLettered():
            pass
        case _:
            assert_never(fate)


def answerable_together(queued: Sequence[Queued], max_chars: int) -> list[list[Queued]]:
    """Runs of consecutive requests whose texts, one per line, stay within `max_chars` (what one
    message may hold), so that a prompt answering them together is no longer than one for a
    single message at its largest."""
    groups: list[list[Queued]] = []
    size = 0
    for item in queued:
        length = len(item.request.text) + 1
        if groups and size + length <= max_chars + 1:
            groups[-1].append(item)
            size += length
        else:
            groups.append([item])
            size = length
    return groups
