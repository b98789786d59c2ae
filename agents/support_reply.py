"""The support agent: parse each request, answer it on its conversation's lane, publish, ack in order.

What becomes of a message is decided in `app.pipeline.answer`; `app.kafka.outbox` puts that
outcome on the topics; this file acks it in order and counts it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import faust

from app.errors import BadInput
from app.kafka.inflight import InFlight, Taken
from app.kafka.internals import on_partitions_revoked
from app.kafka.outbox import Outbox
from app.kafka.publisher import ChunkPublisher
from app.llm.client import DeltaSink
from app.observability import metrics
from app.observability.logs import bind
from app.pipeline import Failure, Outcome
from app.schemas import CustomerMessage, parse_message

log = logging.getLogger(__name__)

Answer = Callable[[CustomerMessage, DeltaSink], Awaitable[Outcome]]


class SupportAgent:
    """Turns each event of the request topic into the records its outcome calls for."""

    def __init__(
        self,
        answer: Answer,
        max_input_chars: int,
        requests: faust.TopicT,
        inflight: InFlight,
        outbox: Outbox,
        crash: Callable[[BaseException], Awaitable[None]],
    ) -> None:
        self._answer, self._max_input_chars = answer, max_input_chars
        self._requests, self._inflight, self._outbox, self._crash = requests, inflight, outbox, crash

    def attach(self, app: faust.App) -> None:
        """Register the agent on the app and forget revoked partitions on rebalance."""
        app.agent(self._requests, name="support_reply")(self._consume)
        on_partitions_revoked(app, self._inflight.forget)

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        async for event in cast(faust.Stream[bytes], stream).noack().events():
            await self.dispatch(event)

    async def dispatch(self, event: faust.EventT[bytes]) -> None:
        """Validate one event and queue it on its lane; bad input goes to the DLQ at once."""
        taken = self._inflight.take(event)
        if taken is None:
            return
        metrics.CONSUMED.inc()
        message = event.message
        bind(trace_id=taken.trace.trace_id)
        try:
            request = parse_message(message.value, self._max_input_chars, message.headers)
        except BadInput as error:
            await self._settle(taken, Outcome(None, Failure.of(error)))
            return
        await self._inflight.submit(request.conversation_id, functools.partial(self._run, request, taken))

    async def _run(self, request: CustomerMessage, taken: Taken) -> None:
        self._inflight.start(taken.event)
        bind(message_id=request.message_id, conversation_id=request.conversation_id)
        chunks = self._outbox.chunks_for(request, taken.trace)
        await self._settle(taken, await self._answer(request, chunks), chunks)

    async def _settle(self, taken: Taken, outcome: Outcome, chunks: ChunkPublisher | None = None) -> None:
        """Publish what `outcome` calls for, then ack; when the broker takes none of it, stop."""
        try:
            await self._outbox.publish(taken.event.message, outcome, taken.trace, chunks)
        except Exception as error:  # escaping would ack the event and kill the agent
            # Nothing was produced for this message, so it must not be acked, and every later
            # message of its partition waits behind it: stop, and let a restart redeliver.
            log.critical(
                "broker refused both the reply and the dead letter; stopping the worker", exc_info=error
            )
            await self._crash(error)
            return
        self._inflight.finish(taken.event)
        metrics.MESSAGES.labels(outcome.label).inc()
        if outcome.reply is not None:
            metrics.REPLY_LATENCY.observe(time.monotonic() - taken.started)
        if outcome.reply is not None and not outcome.published:  # the reply's broker ack just came
            metrics.END_TO_END.observe(max(0.0, time.time() - taken.event.message.timestamp))
