"""Dead letters: inputs that could not be answered, with the reason and the raw bytes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import faust

from app.errors import ErrorKind
from app.observability import metrics
from app.observability.tracing import TraceContext
from app.schemas import DeadLetter, SourcePosition

log = logging.getLogger(__name__)

Produce = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]


class DeadLetters:
    """Writes DLQ records through `produce(key, value, headers)`, which must wait for the broker's ack.

    Details come from exceptions, which may quote a credential (a provider's 401 body does):
    `redact` cleans them before they are written or logged.
    """

    def __init__(self, produce: Produce, redact: Callable[[str], str]) -> None:
        self._produce = produce
        self._redact = redact

    async def send(
        self,
        kind: ErrorKind,
        detail: str,
        source: SourcePosition,
        key: bytes | None,
        raw: bytes | None,
        trace: TraceContext,
    ) -> None:
        """Record one failed input durably, in the input's trace."""
        detail = self._redact(detail)
        letter = DeadLetter.build(kind, detail, source, raw)
        await self._produce(key, letter.model_dump_json().encode(), trace.headers())
        metrics.DEAD_LETTERS.labels(kind).inc()
        log.warning(
            "message dead-lettered",
            extra={
                "kind": kind,
                "detail": detail,
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
            },
        )

    async def reject(self, kind: ErrorKind, detail: str, message: faust.types.Message) -> None:
        """Record one record of a side topic (profiles, control) that cannot be applied, in its trace."""
        source = SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
        trace = TraceContext.of(message.headers)
        await self.send(kind, detail, source, message.key, message.value, trace)
