"""The dead-letter topic as the operator sees it: every record to the topic's end, named and selected."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from app.errors import ErrorKind
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import consumer_from_beginning, read_to_end, stop_client
from app.schemas import DeadLetter
from app.settings import Settings

KINDS: tuple[str, ...] = get_args(ErrorKind)
LETTER_ID = re.compile(r"^(\d+):(\d+)$")
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# An operator's read need not long-poll: an empty partition answers after this, not aiokafka's 500 ms.
FETCH_WAIT_MS = 100


@dataclass(frozen=True)
class StoredLetter:
    """One dead letter and where it sits in the dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    letter: DeadLetter
    failed_at: datetime

    @property
    def id(self) -> str:
        """`partition:offset` in the dead-letter topic: stable for as long as the record is kept."""
        return f"{self.partition}:{self.offset}"

    @property
    def raw(self) -> bytes:
        """The input value byte for byte (empty for a tombstone or an omitted value)."""
        return base64.b64decode(self.letter.raw_b64)


@dataclass(frozen=True)
class DeadLetterLog:
    """What the dead-letter topic holds: its dead letters, oldest failure first, and the ids of
    records that are not dead letters."""

    topic: str
    letters: list[StoredLetter]
    unreadable: list[str]

    def find(self, letter_id: str) -> StoredLetter | None:
        """The dead letter with this id, if the topic holds one."""
        return next((stored for stored in self.letters if stored.id == letter_id), None)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on; an empty filter lets everything through."""

    kinds: frozenset[str] = frozenset()
    since: datetime | None = None
    ids: frozenset[str] = frozenset()

    def __call__(self, stored: StoredLetter) -> bool:
        """True when `stored` passes every filter given."""
        return (
            (not self.kinds or stored.letter.error.kind in self.kinds)
            and (self.since is None or stored.failed_at >= self.since)
            and (not self.ids or stored.id in self.ids)
        )


def check_kind(kind: str) -> str:
    """`kind` if it is one of the contract's dead-letter kinds; else ValueError naming them."""
    if kind not in KINDS:
        raise ValueError(f"--kind {kind!r} is not a dead-letter kind; one of {', '.join(KINDS)}")
    return kind


def check_id(letter_id: str) -> str:
    """`letter_id` if it has the `partition:offset` form; else ValueError."""
    if LETTER_ID.match(letter_id) is None:
        raise ValueError(f"dead-letter id {letter_id!r} is not partition:offset, e.g. 0:17")
    return letter_id


def parse_since(text: str, now: datetime) -> datetime:
    """The moment `--since` names: an ISO-8601 time (UTC without an offset) or a duration before
    `now` such as `30m`, `2h`, `1d`. Raises ValueError."""
    duration = DURATION.match(text.strip())
    if duration is not None:
        return now - timedelta(**{UNITS[duration[2]]: int(duration[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither an ISO-8601 time nor a duration like 30m, 2h, 1d"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def read_dead_letters(settings: Settings) -> DeadLetterLog:
    """Every record of ENRICHER_DLQ_TOPIC from its beginning to its end, without a consumer group.

    Raises TopicMissing when the topic does not exist, KafkaError or TimeoutError when the broker
    does not answer.
    """
    consumer = await consumer_from_beginning(
        settings.kafka_bootstrap_servers,
        [settings.dlq_topic],
        security=KafkaSecurity.from_settings(settings),
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )
    try:
        records = await read_to_end(consumer)
    finally:
        await stop_client(consumer)
    letters: list[StoredLetter] = []
    unreadable: list[str] = []
    for record in records:
        stored = _stored(record)
        if stored is None:
            unreadable.append(f"{record.partition}:{record.offset}")
        else:
            letters.append(stored)
    letters.sort(key=lambda stored: (stored.failed_at, stored.partition, stored.offset))
    return DeadLetterLog(settings.dlq_topic, letters, unreadable)


def _stored(record: ConsumerRecord) -> StoredLetter | None:
    """The dead letter a record holds, or None when it holds none (a record some other tool wrote)."""
    if record.value is None:
        return None
    try:
        letter = DeadLetter.model_validate_json(record.value)
        failed_at = datetime.fromisoformat(letter.failed_at)
        base64.b64decode(letter.raw_b64, validate=True)
    except (ValidationError, ValueError):  # binascii.Error is a ValueError
        return None
    if failed_at.tzinfo is None:
        return None
    headers = tuple((name, value) for name, value in record.headers if value is not None)
    return StoredLetter(record.partition, record.offset, record.key, headers, letter, failed_at)
