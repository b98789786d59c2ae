"""`python -m bench.restarts`: replies across a worker restart, after SIGTERM and after SIGKILL.

The standard load (2,000 messages over 200 conversations, 8 partitions) is offered at 100
msg/s to one worker, against the mock LLM at 200 ms. A few seconds in, the worker is stopped
(SIGTERM, which drains, or SIGKILL, a crash) and a new one with the same group starts once
the old one is gone. Measured: the longest time without a reply while messages kept coming,
and the replies published more than once. Writes bench/results/restarts.md and .json.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.checker import Verdict, check
from bench.report import machine, save, standard_load
from bench.scenarios import read_back
from bench.stack import Stack
from bench.traffic import Sender, TopicReader, workload

LATENCY_MS = 200.0
PARTITIONS = 8
RATE_PER_S = 100.0
STOP_AFTER_S = 6.0
TARGET_GAP_S = {"sigterm": 8.0, "sigkill": 15.0}
MAX_REPEATS = 64  # after one crash: at most the calls in flight were unfinished
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RestartResult:
    """One restart under load."""

    kind: str
    longest_gap_s: float
    """The longest time between two replies, from the first reply to the last."""
    gap_target_s: float
    repeats: int
    verdict: Verdict

    @property
    def passed(self) -> bool:
        """Within the gap target, and nothing lost or reordered (repeats judged for a crash)."""
        repeats_ok = self.repeats <= MAX_REPEATS if self.kind == "sigkill" else self.repeats == 0
        clean = not (self.verdict.lost or self.verdict.out_of_order or self.verdict.unexpected)
        return self.longest_gap_s <= self.gap_target_s and repeats_ok and clean


def longest_gap(arrivals: list[float]) -> float:
    """The longest pause between consecutive arrivals."""
    ordered = sorted(arrivals)
    return max((later - earlier for earlier, later in itertools.pairwise(ordered)), default=0.0)


async def run_restart(stack: Stack, kind: str, messages: int, conversations: int) -> RestartResult:
    """Offer the load, stop the worker `kind`-wise a few seconds in, start its successor."""
    env = await stack.scenario_settings(f"restart-{kind}", PARTITIONS, ENRICHER_MAX_IN_FLIGHT=64)
    first = await stack.start_worker(f"{kind}-1", env)
    settings = first.settings
    second = None
    try:
        async with (
            TopicReader(stack.bootstrap, settings.reply_topic) as replies,
            Sender(stack.bootstrap, settings.input_topic) as sender,
        ):
            sending = asyncio.create_task(sender.send(workload(kind, messages, conversations), RATE_PER_S))
            await asyncio.sleep(STOP_AFTER_S)
            if kind == "sigkill":
                await first.kill()
            else:
                first.process.signal(signal.SIGTERM)
                await asyncio.to_thread(first.process.wait, settings.shutdown_grace_s + 10)
            second = await stack.start_worker(f"{kind}-2", env, wait_ready=False)
            await sending
            answered = await replies.wait_for_each(set(sender.sent_at), TIMEOUT_S)
            await asyncio.sleep(2.0)  # late repeats
            records = replies.decoded()
    finally:
        for worker in (first, second):
            if worker is not None:
                await worker.kill()
    if not answered:
        print(f"bench: {kind}: not every message was answered within {TIMEOUT_S:.0f} s", flush=True)
    inputs = await read_back(stack, settings.input_topic, messages)
    verdict = check(inputs, (keyed for keyed, _ in records))
    return RestartResult(
        kind=kind,
        longest_gap_s=round(longest_gap([at for _, at in records]), 2),
        gap_target_s=TARGET_GAP_S[kind],
        repeats=verdict.duplicated,
        verdict=verdict,
    )


def markdown(results: list[RestartResult], host: dict[str, str | int | None]) -> str:
    """The results as a table, with the machine."""
    lines = [
        "| restart at 100 msg/s | wanted | longest time without a reply | repeated replies | "
        "lost / out of order | |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        repeats = f"≤ {MAX_REPEATS} repeats" if result.kind == "sigkill" else "no repeats"
        lines.append(
            f"| {result.kind.upper()} + restart | ≤ {result.gap_target_s:.0f} s, {repeats} | "
            f"{result.longest_gap_s} s | {result.repeats} | "
            f"{result.verdict.lost} / {result.verdict.out_of_order} | "
            f"{'pass' if result.passed else '**miss**'} |"
        )
    lines += [
        "",
        f"Mock LLM at {LATENCY_MS:.0f} ms, {PARTITIONS} partitions, stopped {STOP_AFTER_S:.0f} s in; the "
        "successor starts once the old worker is gone (its start-up is part of the gap). "
        f"Machine: {host['cores']} cores, {host['cpu_model']}, Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


async def run_all(messages: int, conversations: int, log_dir: Path) -> list[RestartResult]:
    """SIGTERM, then SIGKILL, each on its own topics and group."""
    results = []
    async with Stack(log_dir, LATENCY_MS) as stack:
        for kind in ("sigterm", "sigkill"):
            print(f"bench: restart after {kind.upper()} ...", flush=True)
            started = time.monotonic()
            results.append(await run_restart(stack, kind, messages, conversations))
            print(f"bench: {kind}: {time.monotonic() - started:.0f} s", flush=True)
    return results


def main() -> None:
    """Run both restarts and write bench/results/restarts.{json,md}."""
    messages, conversations, log_dir = standard_load("python -m bench.restarts", __doc__, "restarts")
    host = machine()
    results = asyncio.run(run_all(messages, conversations, log_dir))
    document = {"machine": host, "restarts": [asdict(r) | {"passed": r.passed} for r in results]}
    save("restarts", document, markdown(results, host))


if __name__ == "__main__":
    main()
