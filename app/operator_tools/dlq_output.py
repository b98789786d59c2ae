"""How the `enricher dlq` commands print: a line per dead letter, one dead letter whole, a replay's tally."""

from __future__ import annotations

import json
from collections.abc import Sequence

from app.operator_tools.dead_letters import DeadLetterLog, StoredLetter
from app.operator_tools.replay import Action, Outcome

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
