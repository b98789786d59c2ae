"""What becomes of one input message: one of a closed set of fates, each naming the records it
calls for. `app.pipeline.answer` decides them, `app.kafka.outbox` publishes them, the support
agent counts them; each handles every variant with `match` and `assert_never`, so adding a fate
here makes mypy point at every place that must learn it.

| fate             | closing chunk    | handoff topic   | reply | dead letter | published mark |
| ---------------- | ---------------- | --------------- | ----- | ----------- | -------------- |
| Answered         | empty            |                 | yes   |             | yes            |
| Fallback         | the reply's text |                 | yes   | yes         | yes            |
| HandedOver       | the reply's text | handoff record  | yes   |             | yes            |
| Replayed         |                  | handoff record* | yes   | if stored   | yes            |
| AlreadyPublished |                  |                 |       |             |                |
| Covered          |                  |                 |       | if any      |                |
| ToHuman          |                  | its message     |       |             |                |
| DeadLettered     |                  |                 |       | yes         |                |

(* for a stored `handoff` reply.) A fate's `label` is its `outcome` in `enricher_messages_total`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from app.errors import EnricherError, ErrorKind
from app.schemas import ForHuman, Reply


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a message goes to the DLQ: the dead letter's kind and detail."""

    kind: ErrorKind
    detail: str

    @classmethod
    def of(cls, error: EnricherError) -> Failure:
        """The dead letter an error of the project's tree calls for."""
        return cls(error.kind, str(error))


@dataclass(frozen=True, slots=True)
class Answered:
    """The LLM's answer, checked by the guard; its text streamed already."""

    reply: Reply
    label: ClassVar[str] = "ok"


@dataclass(frozen=True, slots=True)
class Fallback:
    """The fallback template's text, because the LLM refused, ran out of time, failed the guard, or
    gave no answer of its template's response schema, even when asked again.

    `dead_letter` says why; it is None only when another worker stored its fallback reply for
    the message meanwhile (that worker writes the dead letter).
    """

    reply: Reply
    dead_letter: Failure | None
    label: ClassVar[str] = "fallback"


@dataclass(frozen=True, slots=True)
class HandedOver:
    """A handoff rule fired: the handoff reply, and the conversation goes to a human."""

    reply: Reply
    label: ClassVar[str] = "handoff"


@dataclass(frozen=True, slots=True)
class Replayed:
    """A redelivered message whose stored reply the broker may not have taken: published again,
    with the dead letter a stored fallback was made for (it may have been lost in the crash)."""

    reply: Reply
    dead_letter: Failure | None
    label: ClassVar[str] = "replayed"


@dataclass(frozen=True, slots=True)
class AlreadyPublished:
    """A redelivered message whose stored reply the broker took before: nothing to publish."""

    reply: Reply
    label: ClassVar[str] = "already_published"


@dataclass(frozen=True, slots=True)
class Covered:
    """Answered by a reply a later message of its batch publishes; its own dead letter, if the
    reply is a fallback, still goes out (each message can be re-driven)."""

    reply: Reply
    dead_letter: Failure | None = None
    label: ClassVar[str] = "coalesced"


@dataclass(frozen=True, slots=True)
class ToHuman:
    """A message of a conversation a human holds: no reply, its record for the human."""

    record: ForHuman
    label: ClassVar[str] = "for_human"


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """Bad input, or anything unforeseen: a dead letter and no reply."""

    dead_letter: Failure
    label: ClassVar[str] = "dead_lettered"


Fate = Answered | Fallback | HandedOver | Replayed | AlreadyPublished | Covered | ToHuman | DeadLettered
"""One message's fate."""
