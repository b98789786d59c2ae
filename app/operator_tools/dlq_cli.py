"""`enricher dlq list|show|replay`: read the dead letters, re-drive chosen ones to the input topic; and how
the commands print: a line per dead letter, one dead letter whole, a replay's tally."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any, TypeVar

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import Progress

from app.exits import EXIT_CONFIG, fail, settings_or_exit
from app.operator_tools.dead_letters import (
    KINDS,
    DeadLetterLog,
    Selection,
    StoredLetter,
    check_id,
    check_kind,
    parse_since,
    read_dead_letters,
)
from app.operator_tools.replay import Action, Outcome, replayer
from app.redis_client import FAILURES
from app.schemas import utc_now
from app.settings import Settings

T = TypeVar("T")

dlq_cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Read the dead letters of ENRICHER_DLQ_TOPIC and re-drive chosen ones to ENRICHER_INPUT_TOPIC.",
)

# Kafka's, Redis's (TimeoutError and OSError among them; TopicMissing is one): their text says what failed.
SERVICE_ERRORS = (KafkaError, *FAILURES)
PROGRESS_AFTER = 20  # fewer dead letters are replayed before a bar would be worth drawing

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
