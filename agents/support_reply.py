"""The support agent: consume requests, answer each on its conversation's lane, publish, ack in order."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, cast

import faust

from app import metrics
from app.acks import OrderedAcks
from app.dlq import DeadLetters
from app.errors import BadInput, ErrorKind, LLMRejected
from app.faust_app import Topics
from app.lanes import Lanes
from app.logs import bind
from app.pipeline import Answer, answer, turns_of
from app.publisher import ChunkPublisher, Publisher
from app.resources import Resources
from app.schemas import CustomerMessage, SourcePosition, parse_message

log = logging.getLogger(__name__)


class SupportAgent:
    """Owns the lanes and the in-order acks of the support reply flow."""

    def __init__(self, resources: Resources, topics: Topics, lanes: Lanes) -> None:
        self._resources = resources
        self._topics = topics
        self._lanes = lanes
        self._closing = False
        self._acks: OrderedAcks[faust.types.TP] = OrderedAcks()
        self._publisher = Publisher()
        self._dead_letters = DeadLetters(functools.partial(self._publisher.deliver, topics.dead_letters))

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
            request = parse_message(message.value, self._resources.settings.max_input_chars)
        except BadInput as error:
            await self._dead_letter(event, error.kind, str(error))
            metrics.MESSAGES.labels("dead_lettered").inc()
            self._finish(event)
            return
        job = functools.partial(self._handle, request, event, started)
        await self._lanes.submit(request.conversation_id, job)

    async def _handle(self, request: CustomerMessage, event: faust.EventT[bytes], started: float) -> None:
        self._acks.start(event.message.tp, event.message.offset)
        bind(message_id=request.message_id, conversation_id=request.conversation_id)
        key = request.conversation_id.encode()
        try:
            result = await self._answer(request, key)
        except LLMRejected as error:
            await self._dead_letter(event, "llm_rejected", str(error))
            metrics.MESSAGES.labels("dead_lettered").inc()
        except Exception as error:  # one decision point: anything unforeseen is dead-lettered
            log.exception("answering failed")
            await self._dead_letter(event, "internal", f"{type(error).__name__}: {error}")
            metrics.MESSAGES.labels("dead_lettered").inc()
        else:
            if result.unavailable_reason is not None:
                await self._dead_letter(event, "llm_unavailable", result.unavailable_reason)
            outcome = "replayed" if result.replayed else result.reply.status
            metrics.MESSAGES.labels(outcome).inc()
            metrics.REPLY_LATENCY.observe(time.monotonic() - started)
        self._finish(event)

    async def _answer(self, request: CustomerMessage, key: bytes) -> Answer:
        context = self._resources.context
        chunks = ChunkPublisher(self._publisher, self._topics.chunks, request)
        result = await answer(request, self._resources, on_delta=chunks.send)
        if result.replayed:
            reply = result.reply  # stored with its turns when it was first answered
        else:
            reply = await context.record(result.reply, turns_of(request, result.reply))
            await chunks.finish(reply.text if reply.status == "fallback" else None)
        await self._publisher.deliver(self._topics.replies, key, reply.model_dump_json().encode())
        return Answer(reply, result.replayed, result.unavailable_reason)

    async def _dead_letter(self, event: faust.EventT[bytes], kind: ErrorKind, detail: str) -> None:
        message = event.message
        source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
        await self._dead_letters.send(kind, detail, source, message.key, message.value)

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
