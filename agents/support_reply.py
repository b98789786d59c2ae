"""The support agent: consume requests, answer each on its conversation's lane, publish, ack in order."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust

from app.errors import BadInput, ErrorKind, LLMRejected
from app.kafka.acks import OrderedAcks
from app.kafka.dlq import DeadLetters
from app.kafka.faust_app import Topics
from app.kafka.lanes import Lanes
from app.kafka.publisher import ChunkPublisher, Publisher
from app.observability import metrics
from app.observability.logs import bind
from app.pipeline import answer, turns_of
from app.resources import Resources
from app.schemas import CustomerMessage, SourcePosition, parse_message

log = logging.getLogger(__name__)


class SupportAgent:
    """Owns the lanes and the in-order acks of the support reply flow."""

    def __init__(
        self,
        resources: Resources,
        topics: Topics,
        lanes: Lanes,
        dead_letters: DeadLetters,
        crash: Callable[[BaseException], Awaitable[None]],
    ) -> None:
        self._resources = resources
        self._topics = topics
        self._lanes = lanes
        self._dead_letters = dead_letters
        self._crash = crash
        self._closing = False
        self._acks: OrderedAcks[faust.types.TP] = OrderedAcks()
        self._publisher = Publisher()

    def attach(self, app: faust.App) -> None:
        """Register the agent on the app and forget revoked partitions on rebalance."""
        app.agent(self._topics.requests, name="support_reply")(self._consume)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]  # mode types it loosely

    async def _on_revoked(self, sender: object, *args: Any, signal: object, **kwargs: Any) -> None:
        revoked: set[faust.types.TP] = args[0] if args else kwargs.get("revoked", set())
        self._acks.forget(revoked)

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        async for event in cast(faust.Stream[bytes], stream).noack().events():
            await self.dispatch(event)

    async def dispatch(self, event: faust.EventT[bytes]) -> None:
        """Validate one event and queue it on its lane; bad input goes to the DLQ at once."""
        message = event.message
        if self._closing:
            _hand_back(message)  # never acked: redelivered after the restart
            return
        self._acks.track(message.tp, message.offset, event.ack, functools.partial(_hand_back, message))
        started = time.monotonic()
        try:
            request = parse_message(message.value, self._resources.settings.max_input_chars, message.headers)
        except BadInput as error:
            try:
                await self._dead_letter(event, error.kind, str(error))
            except Exception as failure:  # escaping the stream loop would ack and kill the agent
                await self._give_up_worker(failure)
                return
            self._finish(event)
            return
        job = functools.partial(self._handle, request, event, started)
        await self._lanes.submit(request.conversation_id, job)

    async def _handle(self, request: CustomerMessage, event: faust.EventT[bytes], started: float) -> None:
        self._acks.start(event.message.tp, event.message.offset)
        bind(message_id=request.message_id, conversation_id=request.conversation_id)
        try:
            await self._respond(request, event, started)
        except Exception as error:  # the broker took neither a reply nor a dead letter
            await self._give_up_worker(error)
            return
        self._finish(event)

    async def _respond(self, request: CustomerMessage, event: faust.EventT[bytes], started: float) -> None:
        """Answer and publish, or dead-letter; raises only when the broker takes neither."""
        chunks = ChunkPublisher(self._publisher, self._topics.chunks, request)
        try:
            result = await answer(request, self._resources, sink=chunks)
        except LLMRejected as error:
            await self._dead_letter(event, "llm_rejected", str(error))
            return
        except Exception as error:  # one decision point: anything unforeseen is dead-lettered
            log.exception("answering failed")
            await self._dead_letter(event, "internal", f"{type(error).__name__}: {error}")
            return
        reply = result.reply  # a replayed reply was stored with its turns when first answered
        if not result.replayed:
            reply = await self._resources.context.record(reply, turns_of(request, reply))
            await chunks.finish(reply.text if reply.status == "fallback" else None)
        await self._publisher.deliver(
            self._topics.replies, request.conversation_id.encode(), reply.model_dump_json().encode()
        )
        if result.unavailable_reason is not None:
            await self._dead_letter(event, "llm_unavailable", result.unavailable_reason)
        metrics.MESSAGES.labels("replayed" if result.replayed else reply.status).inc()
        metrics.REPLY_LATENCY.observe(time.monotonic() - started)

    async def _give_up_worker(self, error: BaseException) -> None:
        # Nothing was produced for this message, so it must not be acked, and every later
        # message of its partition waits behind it: stop, and let a restart redeliver.
        log.critical("broker refused both the reply and the dead letter; stopping the worker", exc_info=error)
        await self._crash(error)

    async def _dead_letter(self, event: faust.EventT[bytes], kind: ErrorKind, detail: str) -> None:
        message = event.message
        source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
        await self._dead_letters.send(kind, detail, source, message.key, message.value)
        if kind != "llm_unavailable":  # that one's message was answered, with the fallback
            metrics.MESSAGES.labels("dead_lettered").inc()

    def hand_back_queued(self) -> None:
        """At a rebalance: give up the events not started yet, so the rebalance waits only for
        calls in flight (each bounded by the LLM deadline), not for whole queues behind them.

        They are redelivered from the committed offset to whichever worker gets the partition.
        """
        dropped = self._lanes.drop_queued()
        released = self._acks.release_unstarted()
        if dropped or released:
            log.info("rebalance: queued events handed back", extra={"dropped": dropped, "released": released})

    async def drain(self, grace_s: float) -> None:
        """Stop taking events; finish the buffered ones within `grace_s`; hand back the rest.

        Whatever is handed back stays unacked, so the next owner of the partition gets it.
        """
        self._closing = True
        if self._resources.llm.breaker.is_open:
            self.hand_back_queued()  # they could only wait at the breaker until the grace ran out
        await self._lanes.stop(grace_s)
        log.info("drained", extra={"handed_back": self._acks.release_all()})

    def _finish(self, event: faust.EventT[bytes]) -> None:
        self._acks.finish(event.message.tp, event.message.offset)


def _hand_back(message: faust.types.Message) -> None:
    """Stop faust waiting for this message at a rebalance without committing its offset.

    faust's rebalance waits for every message it delivered and sees as not `acked`; only
    `Consumer.ack` records an offset for committing, and that is never called for it.
    """
    message.acked = True
