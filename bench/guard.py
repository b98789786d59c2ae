"""The output guard's cost per answer, over realistic answers to the shipped templates.

`python -m bench.guard` prints microseconds per `OutputGuard.check`, with the system text's shingles
cached (each later reply of a conversation) and not (a conversation's first reply); then what the
guard's window on the stream adds, beside the same answers streamed with no window: CPU per
answer, and how many tokens later the first chunk goes out. Written to bench/results/guard.md.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from app.guard import GuardContext, GuardWindow, OutputGuard, system_words
from app.llm.client import DeltaSink
from app.tokens import encoding_for
from bench.guard_answers import natural_answers

ANSWERS = 1_000
ROUNDS = 5
MODEL = "gpt-4o-mini"  # its tokenizer cuts the answers into the deltas a provider streams
TOKENS_PER_S = 50  # a provider's streaming pace, to put the held tokens in milliseconds
RESULTS = Path(__file__).parent / "results" / "guard.md"


def per_check_us(guard: OutputGuard, cases: list[tuple[str, GuardContext]], *, cold: bool) -> list[float]:
    """Microseconds of each check, clearing the shingle cache before each one when `cold`."""
    timings = []
    for answer, context in cases:
        if cold:
            system_words.cache_clear()
        started = time.perf_counter()
        guard.check(answer, context)
        timings.append((time.perf_counter() - started) * 1e6)
    return timings


class FirstChunk:
    """A DeltaSink that notes how many deltas had arrived when the first text reached it."""

    def __init__(self) -> None:
        self.arrived = 0
        self.first_at: int | None = None

    async def send(self, delta: str) -> None:
        if self.first_at is None:
            self.first_at = self.arrived

    def restart(self) -> None:
        """Never called here: no attempt fails."""


def token_deltas(answer: str) -> list[str]:
    """`answer` cut into its tokens, as a provider streams it."""
    _, starts = encoding_for(MODEL).decode_with_offsets(encoding_for(MODEL).encode(answer))
    return [answer[start:end] for start, end in zip(starts, [*starts[1:], len(answer)], strict=True)]


async def streamed(
    deltas: list[str], guard: OutputGuard, context: GuardContext, *, window: bool
) -> tuple[float, int]:
    """Microseconds to stream `deltas` with or without the window, and the delta (counted from 1)
    that the first text went out with; the same sink either way."""
    first = FirstChunk()
    started = time.perf_counter()
    sink: DeltaSink = GuardWindow(first, guard, context) if window else first
    for delta in deltas:
        first.arrived += 1
        await sink.send(delta)
    if isinstance(sink, GuardWindow):
        await sink.release()
    return (time.perf_counter() - started) * 1e6, first.first_at or len(deltas)


def quantiles(values: list[float]) -> str:
    cut = statistics.quantiles(values, n=100)
    return f"median {cut[49]:.1f}, p90 {cut[89]:.1f}, p99 {cut[98]:.1f}"


async def window_rows(guard: OutputGuard, cases: list[tuple[str, GuardContext]]) -> list[str]:
    """The window's figures beside the same answers streamed without it, in the same run."""
    streams = [(token_deltas(answer), context) for answer, context in cases]
    cpu: dict[bool, list[float]] = {False: [], True: []}
    first: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for deltas, context in streams:
            for window in (False, True):  # interleaved, so that both see the same machine
                spent, at = await streamed(deltas, guard, context, window=window)
                cpu[window].append(spent)
                first[window].append(at)
    tokens = sum(len(deltas) for deltas, _ in streams) / len(streams)
    held = [on - off for on, off in zip(first[True], first[False], strict=True)]
    added = [on - off for on, off in zip(cpu[True], cpu[False], strict=True)]
    ms = [tokens_held * 1000 / TOKENS_PER_S for tokens_held in held]
    return [
        f"| µs to stream an answer ({tokens:.0f} tokens on average), no window | {quantiles(cpu[False])} |",
        f"| µs to stream an answer, with the window | {quantiles(cpu[True])} |",
        f"| µs the window adds to an answer | {quantiles(added)}; mean {statistics.fmean(added):.1f} "
        f"({statistics.fmean(added) / tokens:.2f} a token) |",
        f"| token the first chunk goes out with, no window | {quantiles(first[False])} |",
        f"| token the first chunk goes out with, with the window | {quantiles(first[True])} |",
        f"| first chunk later by, tokens | {quantiles(held)} |",
        f"| first chunk later by, ms at {TOKENS_PER_S} tokens/s | {quantiles(ms)} |",
    ]


def main() -> None:
    every = natural_answers()
    cases = [(answer, conversation.context) for answer, conversation in every[:: len(every) // ANSWERS]][
        :ANSWERS
    ]
    guard = OutputGuard(["support@shop.example"])
    rows = []
    for cold in (False, True):
        timings = [t for _ in range(ROUNDS) for t in per_check_us(guard, cases, cold=cold)]
        label = "first reply (shingles built)" if cold else "later reply (shingles cached)"
        rows.append(f"| µs per check of a whole answer, {label} | {quantiles(timings)} |")
    rows += asyncio.run(window_rows(guard, cases))
    table = "\n".join(["| figure | value |", "| --- | --- |", *rows])
    RESULTS.write_text(
        f"# The output guard: {len(cases)} answers to the shipped templates, {ROUNDS} rounds\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
