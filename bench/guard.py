"""The output guard's cost per answer, over realistic answers to the shipped templates.

`python -m bench.guard` prints microseconds per `OutputGuard.check`, with the system text's shingles
cached (each later reply of a conversation) and not (a conversation's first reply).
"""

from __future__ import annotations

import statistics
import time

from app.guard import echo
from app.guard.output import GuardContext, OutputGuard
from tests.guard.answers import natural_answers

ANSWERS = 1_000
ROUNDS = 5


def per_check_us(guard: OutputGuard, cases: list[tuple[str, GuardContext]], *, cold: bool) -> list[float]:
    """Microseconds of each check, clearing the shingle cache before each one when `cold`."""
    timings = []
    for answer, context in cases:
        if cold:
            echo._shingles.cache_clear()
        started = time.perf_counter()
        guard.check(answer, context)
        timings.append((time.perf_counter() - started) * 1e6)
    return timings


def main() -> None:
    every = natural_answers()
    cases = [(answer, conversation.context) for answer, conversation in every[:: len(every) // ANSWERS]][
        :ANSWERS
    ]
    guard = OutputGuard(["support@shop.example"])
    for cold in (False, True):
        timings = [t for _ in range(ROUNDS) for t in per_check_us(guard, cases, cold=cold)]
        cut = statistics.quantiles(timings, n=100)
        label = "first reply (shingles built)" if cold else "later reply (shingles cached)"
        print(
            f"{label:32} {len(cases)} answers x {ROUNDS}: mean {statistics.fmean(timings):.1f} µs, "
            f"median {cut[49]:.1f} µs, p99 {cut[98]:.1f} µs"
        )


if __name__ == "__main__":
    main()
