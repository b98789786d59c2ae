"""Ids in an answer shaped like this conversation's own ids, but someone else's.

The shape of an id is read from the conversation's own id:
- a **UUID** (`8-4-4-4-12` hex digits) stands for any UUID;
- **a prefix of 2 to 16 letters, a separator (`-`, `_` or `:`) and a tail of letters and digits
  that holds a digit** (`conv-123`, `cust-7`, `cust_a9f3`, `conv-2024-0001`) stands for the same
  prefix (in any case) and separator followed by any such tail. The tail's own letters-or-digits
  make-up is not kept: one system's ids differ in their tails (`cust-7`, `cust-a9f3`), and the digit
  keeps words (`conv-ersation`, `cust-service`) out;
- anything else has **no shape** and finds nothing: a bare number or word would match order
  numbers and prose, and a one-letter prefix (`c-1`) would match order numbers such as `A-1042`.

Ids are compared case-insensitively. The conversation's own ids are never foreign, and neither are ids
the customer wrote (another ticket of theirs): repeating those tells the customer nothing new.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# A tail: letters and digits, maybe in groups joined by separators, with a digit somewhere.
TAIL = r"(?=[A-Za-z0-9_:-]*?[0-9])[A-Za-z0-9]+(?:[-_:][A-Za-z0-9]+)*"
PREFIXED = re.compile(rf"([A-Za-z]{{2,16}})([-_:]){TAIL}")


@functools.lru_cache(maxsize=1024)
def id_shape(own_id: str) -> re.Pattern[str] | None:
    """The pattern of ids shaped like `own_id` (see the module's rules), or None when it has no shape."""
    if re.fullmatch(UUID, own_id):
        return re.compile(rf"(?<![\w-]){UUID}(?![\w-])")
    prefixed = PREFIXED.fullmatch(own_id)
    if prefixed is None:
        return None
    prefix, separator = prefixed.groups()
    return re.compile(rf"(?<![\w-]){re.escape(prefix)}{re.escape(separator)}{TAIL}(?!\w)", re.IGNORECASE)


def shaped_ids(texts: Iterable[str], own_ids: Iterable[str | None]) -> frozenset[str]:
    """The ids in `texts` shaped like any of `own_ids`, case-folded."""
    shapes = [shape for own in own_ids if own and (shape := id_shape(own))]
    return frozenset(
        match.group().casefold() for text in texts for shape in shapes for match in shape.finditer(text)
    )


def foreign_id(
    answer: str, own_ids: Mapping[str, str | None], mentioned: frozenset[str]
) -> tuple[str, str] | None:
    """The first id in `answer` shaped like one of `own_ids` but none of them, with that id's label.

    `own_ids` maps a label ("conversation id", "customer id") to the conversation's own id;
    `mentioned` holds (case-folded) the ids the customer wrote, which are not foreign either.
    """
    allowed: frozenset[str] | None = None  # made only when an id of the shape turns up
    for label, own in own_ids.items():
        shape = id_shape(own) if own else None
        if shape is None:
            continue
        for match in shape.finditer(answer):
            if allowed is None:
                allowed = mentioned | {own.casefold() for own in own_ids.values() if own}
            if match.group().casefold() not in allowed:
                return label, match.group()
    return None
