"""A pydantic ValidationError as one line: where each problem is and what it is."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


def where(location: Sequence[str | int]) -> str:
    """`('usage', 'prompt_tokens')` as `usage.prompt_tokens`."""
    return ".".join(str(part) for part in location)


def one_line(error: ValidationError, *, prefix: Sequence[str | int] = (), first_only: bool = False) -> str:
    """`field: problem; other.field: problem` (just the first with `first_only`), under `prefix`."""
    problems = error.errors()[:1] if first_only else error.errors()
    return "; ".join(
        f"{where((*prefix, *item['loc'])) or 'value'}: {str(item['msg']).removeprefix('Value error, ')}"
        for item in problems
    )
