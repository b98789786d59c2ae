"""`python -m bench.embedded`: what the models embedded in the worker cost it, against the same load
with them off (`ENRICHER_SIGNALS=off`) in the same run.

First the standard load (2,000 messages over 200 conversations) is sent as fast as it goes with
the models on, to find what one worker sustains on this machine (its physical limit, 64 calls
over the mock LLM's 200 ms, is 320 msg/s; a slow machine's CPU ends well before). Half of that
is then offered with the models on and off in turn, three times each, interleaved so that a
busy moment of the machine hits both.
Measured per run: the worker's CPU seconds per 1,000 messages, the p99 end-to-end latency and
its peak RSS; compared are the medians. Writes bench/results/embedded.md and .json.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.report import machine, save, standard_load
from bench.scenarios import Load, LoadResult, run_load
from bench.stack import Stack

LATENCY_MS = 200.0
IN_FLIGHT = 64
PARTITIONS = 8
RUNS = 3
TARGETS = {"cpu_s_per_1k": 0.5, "p99_ms": 20.0, "peak_rss_mb": 150.0}  # growth allowed, models on


@dataclass(frozen=True)
class Side:
    """The medians of one setting's runs, and the runs."""

    signals: str
    cpu_s_per_1k: float
    p99_ms: float
    peak_rss_mb: float
    complete: bool
    runs: list[dict[str, float]]

    @classmethod
    def of(cls, signals: str, results: list[LoadResult]) -> Side:
        """The medians over `results`."""
        runs = [
            {
                "cpu_s_per_1k": round(r.worker_cpu_s_per_1k, 3),
                "p99_ms": round(r.latency.p99_ms, 1),
                "peak_rss_mb": round(r.worker_peak_rss_mb, 1),
            }
            for r in results
        ]
        return cls(
            signals=signals,
            cpu_s_per_1k=statistics.median(run["cpu_s_per_1k"] for run in runs),
            p99_ms=statistics.median(run["p99_ms"] for run in runs),
            peak_rss_mb=statistics.median(run["peak_rss_mb"] for run in runs),
            complete=all(r.complete and not r.verdict.lost and not r.verdict.out_of_order for r in results),
            runs=runs,
        )


async def run_both(messages: int, conversations: int, log_dir: Path) -> tuple[float, Side, Side]:
    """The sustained rate, then RUNS runs at half of it with the models on and off, interleaved."""
    results: dict[str, list[LoadResult]] = {"on": [], "off": []}
    async with Stack(log_dir, LATENCY_MS) as stack:
        print("bench: embedded models on, as fast as it goes ...", flush=True)
        unpaced = Load("embedded-unpaced", messages, conversations, IN_FLIGHT)
        sustained = (await run_load(stack, unpaced, PARTITIONS)).throughput_per_s
        rate = sustained / 2
        for run in range(1, RUNS + 1):
            for signals in ("on", "off"):
                print(f"bench: embedded models {signals} ({run}/{RUNS}) at {rate:.0f} msg/s ...", flush=True)
                load = Load(
                    f"embedded-{signals}",
                    messages,
                    conversations,
                    IN_FLIGHT,
                    rate,
                    env={"ENRICHER_SIGNALS": signals},
                )
                results[signals].append(await run_load(stack, load, PARTITIONS))
    return sustained, Side.of("on", results["on"]), Side.of("off", results["off"])


def markdown(sustained: float, on: Side, off: Side, host: dict[str, str | int | None]) -> str:
    """The comparison as a table, with the machine."""
    lines = [
        f"| embedded models, half load ({sustained / 2:.0f} msg/s) | off | on | grows by | allowed | |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for measure, label, unit in (
        ("cpu_s_per_1k", "worker CPU per 1,000 messages", "s"),
        ("p99_ms", "p99 end-to-end latency", "ms"),
        ("peak_rss_mb", "worker peak RSS", "MB"),
    ):
        before, after = getattr(off, measure), getattr(on, measure)
        growth = after - before
        verdict = "pass" if growth <= TARGETS[measure] else "**miss**"
        lines.append(
            f"| {label} | {before:g} {unit} | {after:g} {unit} | {growth:+.3g} {unit} | "
            f"≤ {TARGETS[measure]:g} {unit} | {verdict} |"
        )
    lines += [
        "",
        f"One worker sustained {sustained:.0f} msg/s with the models on. "
        f"Medians of {RUNS} interleaved runs each; every run answered every message, in order: "
        f"{'yes' if on.complete and off.complete else '**no**'}. Mock LLM at {LATENCY_MS:.0f} ms, "
        f"{IN_FLIGHT} calls in flight, {PARTITIONS} partitions. Machine: {host['cores']} cores, "
        f"{host['cpu_model']}, Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run both settings and write bench/results/embedded.{json,md}."""
    messages, conversations, log_dir = standard_load("python -m bench.embedded", __doc__, "embedded")
    host = machine()
    sustained, on, off = asyncio.run(run_both(messages, conversations, log_dir))
    document = {
        "machine": host,
        "targets": TARGETS,
        "sustained_per_s": round(sustained, 1),
        "on": asdict(on),
        "off": asdict(off),
    }
    save("embedded", document, markdown(sustained, on, off, host))


if __name__ == "__main__":
    main()
