"""Wire formats of the contract: what comes in, what goes out, what goes to the DLQ."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.errors import ErrorKind, InvalidJson, InvalidMessage, TooLarge, one_line

REPLY_NAMESPACE = uuid.UUID("5b4c0a52-3f0e-4f7e-9a55-2f4f3b1d6c11")

Identifier = Annotated[str, Field(min_length=1, max_length=128)]
Headers = Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None]

# Kafka-level bounds of one input record. A value within MAX_VALUE_BYTES fits, base64-encoded,
# in a dead letter under the producer's 1 MiB request limit; a larger one is not copied.
MAX_VALUE_BYTES = 512 * 1024
MAX_HEADERS = 64
MAX_HEADER_BYTES = 64 * 1024


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Millisecond RFC 3339 in UTC with a `Z`, as the contract shows it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=4096)  # asked for by the chunks and by the reply of one message
def reply_id_for(message_id: str) -> str:
    """The stable reply id: the same message_id always gives the same reply_id."""
    return str(uuid.uuid5(REPLY_NAMESPACE, message_id))


class CustomerMessage(BaseModel):
    """One customer message from the input topic; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    message_id: Identifier
    conversation_id: Identifier
    text: Annotated[str, Field(min_length=1)]
    customer_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    channel: str = "chat"
    locale: str = "en"
    sent_at: Annotated[AwareDatetime, Field(strict=False)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


def check_record(raw: bytes | None, headers: Headers | None) -> None:
    """Raise TooLarge for a value or headers beyond the Kafka-level bounds above."""
    if raw is not None and len(raw) > MAX_VALUE_BYTES:
        raise TooLarge(f"value has {len(raw)} bytes, the limit is {MAX_VALUE_BYTES}")
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    if len(pairs) > MAX_HEADERS:
        raise TooLarge(f"record has {len(pairs)} headers, the limit is {MAX_HEADERS}")
    size = sum(len(name.encode()) + len(value or b"") for name, value in pairs)
    if size > MAX_HEADER_BYTES:
        raise TooLarge(f"headers have {size} bytes, the limit is {MAX_HEADER_BYTES}")


def json_object(raw: bytes | None) -> dict[str, Any]:
    """A record's value as a JSON object: InvalidJson when it is no UTF-8 JSON (or a tombstone),
    InvalidMessage when it is JSON but not an object (the record's shape is at fault)."""
    if raw is None:
        raise InvalidJson("empty value (tombstone)")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InvalidJson(f"not UTF-8: {error.reason} at byte {error.start}") from None
    except json.JSONDecodeError as error:
        raise InvalidJson(f"not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if not isinstance(document, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(document).__name__}")
    return document


def parse_message(raw: bytes | None, max_input_chars: int, headers: Headers | None = None) -> CustomerMessage:
    """Decode and validate an input record, raising the BadInput subclass that names the fault."""
    check_record(raw, headers)
    document = json_object(raw)
    try:
        message = CustomerMessage.model_validate(document)
    except ValidationError as error:
        raise InvalidMessage(one_line(error)) from None
    if len(message.text) > max_input_chars:
        raise TooLarge(f"text has {len(message.text)} characters, the limit is {max_input_chars}")
    return message


OrderStatus = Literal["received", "packed", "shipped", "delivered", "cancelled", "returned"]


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    sku: Identifier
    name: Annotated[str, Field(min_length=1, max_length=256)]
    qty: Annotated[int, Field(ge=1)]


class Order(BaseModel):
    """One order record from the orders topic (key `customer_id`); unknown fields are ignored.

    A later record for the same `order_id` replaces the earlier one, by `updated_at`.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    order_id: Identifier
    customer_id: Identifier
    status: OrderStatus
    items: Annotated[list[OrderItem], Field(max_length=100)]
    placed_at: Annotated[AwareDatetime, Field(strict=False)]
    updated_at: Annotated[AwareDatetime, Field(strict=False)]
    carrier: Annotated[str, Field(max_length=128)] | None = None
    tracking_number: Annotated[str, Field(max_length=128)] | None = None

    def as_record(self) -> dict[str, Any]:
        """The order as plain data, its times as the contract writes them (`rfc3339`): what Redis
        keeps, templates see and the order lookup tool answers."""
        return {
            **self.model_dump(mode="json"),
            "placed_at": rfc3339(self.placed_at),
            "updated_at": rfc3339(self.updated_at),
        }


def parse_order(raw: bytes | None, key: bytes | None) -> Order:
    """Decode and validate an order record, raising the BadInput subclass that names the fault; the
    record's key must be its `customer_id`."""
    check_record(raw, None)
    document = json_object(raw)
    try:
        order = Order.model_validate(document)
    except ValidationError as error:
        raise InvalidMessage(one_line(error)) from None
    if (key or b"").decode("utf-8", "replace") != order.customer_id:
        raise InvalidMessage(f"the record's key is not its customer_id {order.customer_id!r}")
    return order


class PromptRef(BaseModel):
    """Which template produced a reply: its name and a hash of its source."""

    name: str
    version: str
    variant: str | None = None


class Usage(BaseModel):
    """Token usage as reported by the LLM API, and what it cost (app/prices.py)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens the provider served from its prompt cache (its `prompt_tokens_details`)."""
    cost_usd: float | None = None
    """From the price table; None for a model it does not know."""
    knowledge_tokens: int = 0
    """The prompt tokens the help-center's passages took (counted here, offline: part of
    `prompt_tokens`)."""

    @model_validator(mode="before")
    @classmethod
    def _lift_cached_tokens(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(details := data.get("prompt_tokens_details"), dict):
            return {**data, "cached_tokens": details.get("cached_tokens") or 0}
        return data

    def __add__(self, other: Usage) -> Usage:
        """The tokens of two calls made for one reply; unpriced (`app/prices.py` prices the sum)."""
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            knowledge_tokens=self.knowledge_tokens + other.knowledge_tokens,
        )


class Source(BaseModel):
    """A help-center article the reply's prompt carried (app/knowledge), as the reply's `sources`
    lists it: the article's id and title, and its best passage's score."""

    id: str
    title: str
    score: float


class ToolCalled(BaseModel):
    """One tool call made for a reply, as the reply's `tools` lists it (arguments and result are
    not repeated)."""

    name: str
    ok: bool
    ms: int


class Reply(BaseModel):
    """A finished reply on the reply topic; also what `reply:{message_id}` stores."""

    reply_id: str
    message_id: str
    conversation_id: str
    customer_id: str | None = None
    text: str
    status: Literal["ok", "fallback", "handoff"]
    model: str
    prompt: PromptRef
    usage: Usage
    latency_ms: int
    created_at: str
    signals: dict[str, Any] | None = None
    """What the embedded models found in the customer's text (app/signals), when they ran."""
    handoff: dict[str, str] | None = None
    """With status `handoff`: why the conversation went to a human, `{"kind", "detail"}`."""
    answers: list[str] = Field(default_factory=list)
    """The messages this reply answers, in input order, `message_id` last; more than one when
    messages that queued behind a reply were answered together (ENRICHER_COALESCE)."""
    sources: list[Source] = Field(default_factory=list)
    """The help-center articles the prompt carried, best first; empty when none."""
    tools: list[ToolCalled] = Field(default_factory=list)
    """The tool calls the LLM made for this reply, in order (app/llm/tool_loop.py)."""
    structured: dict[str, Any] | None = None
    """When the template declares a response schema: the validated JSON object the LLM answered,
    with the customer's personal data back in it; its text field is `text`."""

    @model_validator(mode="after")
    def _answers_its_message(self) -> Reply:
        # A reply stored before `answers` existed answers its own message.
        if not self.answers:
            self.answers = [self.message_id]
        return self


class Handoff(BaseModel):
    """The handoff topic's record of a conversation handed to a human, made from the handoff reply."""

    conversation_id: str
    customer_id: str | None
    reason: dict[str, str]
    message_ids: list[str]
    signals: dict[str, Any] | None
    at: str

    @classmethod
    def of(cls, reply: Reply) -> Handoff:
        """The record a `handoff` reply calls for."""
        return cls(
            conversation_id=reply.conversation_id,
            customer_id=reply.customer_id,
            reason=reply.handoff or {},
            message_ids=reply.answers,
            signals=reply.signals,
            at=reply.created_at,
        )


class ForHuman(BaseModel):
    """A customer message of a conversation a human has, on the handoff topic instead of answered."""

    conversation_id: str
    message_id: str
    text: str
    at: str


class ReplyChunk(BaseModel):
    """A partial reply on the stream topic, sent while the LLM streams."""

    reply_id: str
    message_id: str
    conversation_id: str
    seq: int
    delta: str
    done: bool
    reset: bool = False
    """The text streamed so far for this reply is void (a failed attempt, or the fallback
    replacing it): start over from this chunk's delta."""


class ErrorInfo(BaseModel):
    """Why a message went to the DLQ."""

    kind: ErrorKind
    detail: str


class SourcePosition(BaseModel):
    """Where the failed message sits in its topic."""

    topic: str
    partition: int
    offset: int


class DeadLetter(BaseModel):
    """A DLQ record: the reason, the position and the raw input bytes for re-driving."""

    error: ErrorInfo
    source: SourcePosition
    raw_b64: str
    failed_at: str
    raw_omitted: bool = False
    """The value was over MAX_VALUE_BYTES and is not copied: it stays at `source`."""

    @classmethod
    def build(cls, kind: ErrorKind, detail: str, source: SourcePosition, raw: bytes | None) -> DeadLetter:
        """A dead letter for `raw`, failed now."""
        omitted = raw is not None and len(raw) > MAX_VALUE_BYTES
        return cls(
            error=ErrorInfo(kind=kind, detail=detail),
            source=source,
            raw_b64="" if omitted else base64.b64encode(raw or b"").decode("ascii"),
            failed_at=rfc3339(utc_now()),
            raw_omitted=omitted,
        )


class HistoryTurn(BaseModel):
    """One turn of a conversation as kept in `conversation:{id}:history`."""

    role: Literal["customer", "agent"]
    text: str
    message_id: str
    at: str
    conversation_id: str | None = None
