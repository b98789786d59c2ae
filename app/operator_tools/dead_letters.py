"""The dead-letter queue for the operator: `enricher dlq list|show|replay`.

The dead-letter topic is read to its end, every record named (`partition:offset`) and selected
by kind, time or id; `list` prints a line per dead letter, `show` one dead letter whole, and
`replay` re-drives chosen ones, each one's original bytes and key back onto the input topic, at
most once, and prints a tally.

What was replayed is remembered in Redis, one key per dead letter (`dlq:replayed:{topic}:{id}`),
written only after the broker has taken the replayed record: see `Replayer.replay` for why.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar, get_args

import typer
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import Progress

from app.errors import EXIT_CONFIG, BadInput, ErrorKind, fail, settings_or_exit
from app.kafka.security import KafkaSecurity
from app.kafka.topic_reader import KAFKA_TIMEOUT_S, consumer_from_beginning, read_to_end, stop_client
from app.observability.tracing import TraceContext
from app.redis_client import FAILURES, OPERATION_TIMEOUT_S, RedisClient, connect
from app.redis_keys import history_key, published_key, replayed_key, reply_key
from app.schemas import CustomerMessage, DeadLetter, Reply, parse_message, rfc3339, utc_now
from app.settings import Settings

T = TypeVar("T")

KINDS: tuple[str, ...] = get_args(ErrorKind)
LETTER_ID = re.compile(r"^(\d+):(\d+)$")
DURATION = re.compile(r"^(\d+)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# An operator's read need not long-poll: an empty partition answers after this, not aiokafka's 500 ms.
FETCH_WAIT_MS = 100
REPLAY_HEADER = "x-enricher-replay-of"
REDIS_TIMEOUT_S = OPERATION_TIMEOUT_S * 2  # a try and its retries, as the worker allows
# Kafka's, Redis's (TimeoutError and OSError among them; TopicMissing is one): their text says what failed.
SERVICE_ERRORS = (KafkaError, *FAILURES)
PROGRESS_AFTER = 20  # fewer dead letters are replayed before a bar would be worth drawing

Action = Literal["replayed", "already replayed", "skipped"]

dlq_cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Read the dead letters of ENRICHER_DLQ_TOPIC and re-drive chosen ones to ENRICHER_INPUT_TOPIC.",
)

Kinds = Annotated[
    list[str] | None,
    typer.Option("--kind", help=f"Only dead letters of this kind (repeatable): {', '.join(KINDS)}."),
]
Since = Annotated[
    str | None,
    typer.Option(
        help="Only dead letters that failed at or after this time: ISO-8601 (UTC without an offset), "
        "or a duration ago such as 30m, 2h, 1d."
    ),
]


@dlq_cli.callback()
def dlq() -> None:
    """Read the dead letters and re-drive chosen ones; configured by the worker's environment."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its connection errors: ours says it once


@dlq_cli.command("list")
def list_letters(kind: Kinds = None, since: Since = None) -> None:
    """Print one line per dead letter (id, failed_at, kind, key, detail), oldest first, and a total.

    The id is the dead letter's `partition:offset` in the dead-letter topic.
    """
    selection = _selection(kind, since, ())
    log = _run(read_dead_letters(settings_or_exit()))
    chosen = [stored for stored in log.letters if selection(stored)]
    for line in letter_lines(chosen):
        print(line)
    print(total_line(len(chosen), log))


@dlq_cli.command()
def show(
    letter_id: Annotated[str, typer.Argument(metavar="ID", help="A dead letter's id, e.g. 0:17.")],
) -> None:
    """Print one dead letter whole, as JSON, with its input decoded when it is UTF-8."""
    selection = _selection(None, None, [letter_id])
    log = _run(read_dead_letters(settings_or_exit()))
    stored = next(filter(selection, log.letters), None)
    if stored is None:
        fail(f"no dead letter {letter_id} in {log.topic}")
    print(letter_json(stored))


@dlq_cli.command()
def replay(
    kind: Kinds = None,
    since: Since = None,
    ids: Annotated[list[str] | None, typer.Option("--id", help="Only this dead letter (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done; do nothing.")] = False,
) -> None:
    """Re-publish the chosen dead letters' input to the input topic, each at most once.

    The input is the `raw_b64` bytes and the key, to the partition it came from,
    with the header `x-enricher-replay-of: ID` and the dead letter's trace.
    A dead letter replayed before is not replayed again (Redis remembers).

    Kinds invalid_json, invalid_message and too_large are replayed as they are,
    so they only become new dead letters: leave them out with --kind.
    For llm_rejected and llm_unavailable the stored fallback reply is dropped
    first, so the worker answers the message anew instead of repeating it.
    Dead letters of profile records, of values too large to copy and of
    tombstones are skipped.

    Prints a line per dead letter and the counts. Exits 1 when an --id is not
    in the topic or a service fails (after printing what was done).
    """
    selection = _selection(kind, since, ids or ())
    settings: Settings = settings_or_exit()
    log = _run(read_dead_letters(settings))
    missing = [letter_id for letter_id in selection.ids if log.find(letter_id) is None]
    if missing:
        fail(f"no dead letter {' '.join(sorted(missing))} in {log.topic}; nothing replayed")
    chosen = [stored for stored in log.letters if selection(stored)]
    outcomes: list[Outcome] = []
    try:
        asyncio.run(_replay_all(settings, chosen, outcomes, dry_run=dry_run))
    except SERVICE_ERRORS as error:
        _print(outcome_lines(outcomes, dry_run=dry_run))
        fail(f"replay stopped: {_described(error)}")
    _print(outcome_lines(outcomes, dry_run=dry_run))


async def _replay_all(
    settings: Settings, letters: Sequence[StoredLetter], outcomes: list[Outcome], *, dry_run: bool
) -> None:
    """Replay `letters` in order into `outcomes`, with a progress bar on stderr for many on a terminal."""
    console = Console(stderr=True)
    shown = console.is_terminal and len(letters) > PROGRESS_AFTER
    with Progress(console=console, transient=True, disable=not shown) as progress:
        task = progress.add_task("replaying", total=len(letters))
        async with replayer(settings, dry_run=dry_run) as replaying:
            for stored in letters:
                outcomes.append(await replaying.replay(stored))
                progress.advance(task)


def _selection(kinds: Sequence[str] | None, since: str | None, ids: Sequence[str]) -> Selection:
    """The filters of the options; a bad one exits 2 with one line."""
    try:
        return Selection(
            kinds=frozenset(check_kind(kind) for kind in kinds or ()),
            since=parse_since(since, utc_now()) if since is not None else None,
            ids=frozenset(check_id(letter_id) for letter_id in ids),
        )
    except ValueError as error:
        fail(str(error), EXIT_CONFIG)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """What `work` returns; a broker or Redis that fails exits 1 with one line."""
    try:
        return asyncio.run(work)
    except SERVICE_ERRORS as error:
        fail(_described(error))


def _described(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _print(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


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


class ReplayMark(BaseModel):
    """What `replayed_key` holds: which dead letter was replayed, when, and to where."""

    failed_at: str
    """The dead letter's own: a mark left from a dead-letter topic deleted and made anew (whose
    ids start again at 0) names another dead letter and does not count."""
    replayed_at: str
    to: str


@dataclass(frozen=True)
class Outcome:
    """What became of one dead letter, with a note for the operator."""

    letter_id: str
    action: Action
    note: str = ""


class Replayer:
    """Replays dead letters one at a time; without a producer (a dry run) it only says what it would do."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        producer: AIOKafkaProducer | None,
        partitions: frozenset[int] = frozenset(),
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._producer = producer
        self._partitions = partitions  # of the input topic

    async def replay(self, stored: StoredLetter) -> Outcome:
        """Put the dead letter's input back on the input topic, unless it was replayed before or
        cannot be; raises KafkaError, RedisError or TimeoutError when a service fails.

        Produce first, mark after: a crash between the two leaves the letter unmarked, and the
        next run replays it again. That duplicate input is harmless, as the worker answers a
        message_id once (its reply store). Marking first would turn the same crash into a dead
        letter marked as replayed that never was: lost without a trace.
        """
        unfit = self._unfit(stored)
        if unfit:
            return Outcome(stored.id, "skipped", unfit)
        earlier = await self._mark_of(stored)
        if earlier is not None:
            return Outcome(stored.id, "already replayed", f"at {earlier.replayed_at} to {earlier.to}")
        message = self._message(stored)
        answered = message if message is not None and await self._has_stored_fallback(message) else None
        note = f"drops the stored fallback reply to {answered.message_id}" if answered else ""
        if self._producer is None:
            return Outcome(stored.id, "replayed", note)
        if answered is not None:
            await self._drop_fallback(answered)
        source = stored.letter.source
        sent = self._producer.send_and_wait(
            self._settings.input_topic,
            stored.raw,
            key=stored.key,
            # The partition it was read from keeps it behind the conversation's earlier messages,
            # whichever partitioner its producer used; the key decides on a topic made anew smaller.
            partition=source.partition if source.partition in self._partitions else None,
            headers=_headers(stored),
        )
        async with asyncio.timeout(KAFKA_TIMEOUT_S):
            metadata = await sent
        to = f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"
        mark = ReplayMark(failed_at=stored.letter.failed_at, replayed_at=rfc3339(utc_now()), to=to)
        key = replayed_key(self._settings.dlq_topic, stored.id)
        # No expiry: a mark must outlive its dead letter, or a second run would replay it again.
        await _bounded(self._redis.set(key, mark.model_dump_json()))
        return Outcome(stored.id, "replayed", ", ".join(filter(None, [f"to {to}", note])))

    def _unfit(self, stored: StoredLetter) -> str:
        """Why the dead letter cannot be replayed, or "" when it can."""
        source = stored.letter.source
        if source.topic != self._settings.input_topic:  # e.g. a profile record
            return f"it came from {source.topic}, not the input topic {self._settings.input_topic}"
        if stored.letter.raw_omitted:
            return f"its value was too large to copy; it is still at {source.topic}[{source.partition}]"
        if not stored.raw:
            return "it has no value to re-drive (a tombstone)"
        return ""

    async def _mark_of(self, stored: StoredLetter) -> ReplayMark | None:
        found = await _bounded(self._redis.get(replayed_key(self._settings.dlq_topic, stored.id)))
        if found is None:
            return None
        try:
            mark = ReplayMark.model_validate_json(found)
        except ValidationError:
            return None
        return mark if mark.failed_at == stored.letter.failed_at else None

    def _message(self, stored: StoredLetter) -> CustomerMessage | None:
        try:
            return parse_message(stored.raw, self._settings.max_input_chars)
        except BadInput:
            return None

    async def _has_stored_fallback(self, message: CustomerMessage) -> bool:
        """True when the worker stored a fallback reply for the message: it would answer the
        replayed message with that again (a redelivery is answered from the reply store)."""
        found = await _bounded(self._redis.get(reply_key(message.message_id)))
        try:
            return found is not None and Reply.model_validate_json(found).status == "fallback"
        except ValidationError:
            return False

    async def _drop_fallback(self, message: CustomerMessage) -> None:
        """Forget the fallback reply so the worker answers the message anew.

        The published mark goes first: left without its reply, it would make the worker take its
        next reply for published and skip it after a crash. The message's turns leave the history
        too, or the new prompt would hold the question twice and the fallback text as an answer;
        the worker adds them again with its new reply. Single-key commands only, as on a cluster.
        """
        await _bounded(self._redis.delete(published_key(message.message_id)))
        await _bounded(self._redis.delete(reply_key(message.message_id)))
        history = history_key(message.conversation_id)
        for item in await _bounded(self._redis.lrange(history, 0, -1)):
            # str always, as the client decodes responses; the test tells mypy so.
            if isinstance(item, str) and _turn_of(item) == message.message_id:
                await _bounded(self._redis.lrem(history, 0, item))


@asynccontextmanager
async def replayer(settings: Settings, *, dry_run: bool) -> AsyncIterator[Replayer]:
    """A Replayer on the settings' Redis and input topic; a dry run opens no producer."""
    redis = connect(settings.redis_url.get_secret_value(), 4, cluster=settings.redis_cluster == "on")
    try:
        if dry_run:
            yield Replayer(settings, redis, None)
            return
        options = KafkaSecurity.from_settings(settings).client_options()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", **options)
        try:
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                await producer.start()
            async with asyncio.timeout(KAFKA_TIMEOUT_S):
                partitions = await producer.partitions_for(settings.input_topic)
            yield Replayer(settings, redis, producer, frozenset(partitions))
        finally:
            await stop_client(producer)
    finally:
        await redis.aclose()


def _headers(stored: StoredLetter) -> list[tuple[str, bytes]]:
    """The replay's name, and the dead letter's trace continued by a span of the replay's own."""
    headers = [(REPLAY_HEADER, stored.id.encode())]
    trace = TraceContext.of(stored.headers)
    if trace.parent_id is not None:  # a trace the dead letter carried, not one started here
        headers += trace.headers()
    return headers


def _turn_of(item: str) -> object:
    """The message_id of a history entry, or None when it is not a JSON object."""
    try:
        turn = json.loads(item)
    except ValueError:
        return None
    return turn.get("message_id") if isinstance(turn, dict) else None


async def _bounded(call: Awaitable[T]) -> T:
    async with asyncio.timeout(REDIS_TIMEOUT_S):
        return await call


DETAIL_CHARS = 60
ACTIONS: tuple[Action, ...] = ("replayed", "already replayed", "skipped")


def text_of(value: bytes | None) -> str | None:
    """Bytes as text for people: UTF-8, anything else escaped."""
    return None if value is None else value.decode("utf-8", "backslashreplace")


def letter_lines(letters: Sequence[StoredLetter]) -> list[str]:
    """One line a dead letter: id, failed_at, kind, key and the detail cut short, in columns."""
    rows = [
        (
            stored.id,
            stored.letter.failed_at,
            stored.letter.error.kind,
            text_of(stored.key) or "-",
            _shortened(stored.letter.error.detail),
        )
        for stored in letters
    ]
    widths = [max((len(row[column]) for row in rows), default=0) for column in range(4)]
    return ["  ".join([*map(str.ljust, row[:4], widths), row[4]]) for row in rows]


def total_line(shown: int, log: DeadLetterLog) -> str:
    """How many dead letters were listed, of how many, and the records that are none."""
    count = f"{shown} of {len(log.letters)}" if shown != len(log.letters) else str(shown)
    line = f"{count} dead letter{'' if len(log.letters) == 1 else 's'} in {log.topic}"
    if log.unreadable:
        line += f"; not dead letters, left out: {' '.join(log.unreadable)}"
    return line


def letter_json(stored: StoredLetter) -> str:
    """The whole record as indented JSON: its id, key, headers, the dead letter, and the raw input
    decoded (a JSON value when it is UTF-8 JSON, the text when only UTF-8, else null)."""
    document = {
        "id": stored.id,
        "key": text_of(stored.key),
        "headers": {name: text_of(value) for name, value in stored.headers},
        **stored.letter.model_dump(mode="json"),
        "raw": _decoded(stored.raw),
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def outcome_lines(outcomes: Sequence[Outcome], *, dry_run: bool) -> list[str]:
    """A line for each dead letter worked on, then the count of each action with its ids."""
    lines = [
        f"{_verb(o.action, dry_run)} {o.letter_id}" + (f": {o.note}" if o.note else "") for o in outcomes
    ]
    counts = []
    for action in ACTIONS:
        ids = [o.letter_id for o in outcomes if o.action == action]
        counts.append(f"{_verb(action, dry_run)} {len(ids)}" + (f" ({' '.join(ids)})" if ids else ""))
    prefix = "dry run, nothing published or marked: " if dry_run else ""
    return [*lines, prefix + ", ".join(counts)]


def _verb(action: Action, dry_run: bool) -> str:
    return "would replay" if dry_run and action == "replayed" else action


def _shortened(detail: str) -> str:
    flat = " ".join(detail.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 1] + "…"


def _decoded(raw: bytes) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
