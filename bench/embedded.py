"""`python -m bench.embedded`: what the models embedded in the worker cost it, against the same load
with them off (`ENRICHER_SIGNALS=off`) in the same run.

First the standard load (2,000 messages over 200 conversations) is sent as fast as it goes to the
reference worker (bench/reference.py) and then to the worker with the models on, to find what one
worker sustains on this machine (its physical limit, 64 calls over the mock LLM's 200 ms, is
320 msg/s; a slow machine's CPU ends well before), beside the reference's figures. Half of that
is then offered with the models off, on, and on with every text worded anew (`SIDES`) in turn,
five times each, interleaved so that a busy moment of the machine hits all of them.
Measured per run: the worker's CPU seconds per 1,000 messages, the p99 end-to-end latency and
its peak RSS; compared are the medians. Writes bench/results/embedded.md and .json.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.report import machine, ratio, save, standard_load
from bench.scenarios import Load, LoadResult, run_load
from bench.stack import Stack

LATENCY_MS = 200.0
IN_FLIGHT = 64
PARTITIONS = 8
RUNS = 5
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


SIDES = ("off", "on", "new")
"""Models off; on, on the standard load (texts that differ in their numbers); on, every text
worded anew (`traffic.workload`), so the models remember nothing."""


@dataclass(frozen=True)
class FlatOut:
    """One run as fast as it goes: throughput and CPU."""

    msg_per_s: float
    cpu_s_per_1k: float

    @classmethod
    def of(cls, result: LoadResult) -> FlatOut:
        """The figures of one load run."""
        return cls(round(result.throughput_per_s, 1), round(result.worker_cpu_s_per_1k, 3))


async def run_sides(
    messages: int, conversations: int, log_dir: Path
) -> tuple[FlatOut, FlatOut, dict[str, Side]]:
    """The reference's and the worker's rates flat out, then RUNS runs of each side at half of the
    worker's, interleaved."""
    results: dict[str, list[LoadResult]] = {side: [] for side in SIDES}
    async with Stack(log_dir, LATENCY_MS) as stack:
        unpaced = Load("embedded-unpaced", messages, conversations, IN_FLIGHT)
        print("bench: the reference worker, as fast as it goes ...", flush=True)
        reference = FlatOut.of(await run_load(stack, unpaced.on("reference"), PARTITIONS))
        print("bench: embedded models on, as fast as it goes ...", flush=True)
        flat_out = FlatOut.of(await run_load(stack, unpaced, PARTITIONS))
        rate = flat_out.msg_per_s / 2
        for run in range(1, RUNS + 1):
            for side in SIDES:
                print(f"bench: embedded models {side} ({run}/{RUNS}) at {rate:.0f} msg/s ...", flush=True)
                load = Load(
                    f"embedded-{side}",
                    messages,
                    conversations,
                    IN_FLIGHT,
                    rate,
                    env={"ENRICHER_SIGNALS": "off" if side == "off" else "on"},
                    new_wordings=side == "new",
                )
                results[side].append(await run_load(stack, load, PARTITIONS))
    return flat_out, reference, {side: Side.of(side, results[side]) for side in SIDES}


MEASURES = (
    ("cpu_s_per_1k", "worker CPU per 1,000 messages", "s"),
    ("p99_ms", "p99 end-to-end latency", "ms"),
    ("peak_rss_mb", "worker peak RSS", "MB"),
)


def markdown(
    flat_out: FlatOut, reference: FlatOut, sides: dict[str, Side], host: dict[str, str | int | None]
) -> str:
    """The comparison as a table, with the machine."""
    off = sides["off"]
    sustained = flat_out.msg_per_s
    lines = [
        f"| embedded models, half load ({sustained / 2:.0f} msg/s) | off | on | grows by | allowed | |"
        " on, every wording new | grows by | |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for measure, label, unit in MEASURES:
        before = getattr(off, measure)
        cells = [f"| {label} | {before:g} {unit} "]
        for side in ("on", "new"):
            after = getattr(sides[side], measure)
            growth = after - before
            verdict = "pass" if growth <= TARGETS[measure] else "**miss**"
            allowed = f"| ≤ {TARGETS[measure]:g} {unit} " if side == "on" else ""
            cells.append(f"| {after:g} {unit} | {growth:+.3g} {unit} {allowed}| {verdict} ")
        lines.append("".join(cells) + "|")
    complete = all(side.complete for side in sides.values())
    lines += [
        "",
        f"One worker sustained {sustained:.0f} msg/s with the models on, at {flat_out.cpu_s_per_1k:.2f} s "
        f"of CPU per 1,000 messages; the reference worker (bench/reference.py) on the same load in the "
        f"same run {reference.msg_per_s:.0f} msg/s at {reference.cpu_s_per_1k:.2f} s: "
        f"{ratio(flat_out.msg_per_s, reference.msg_per_s):.2f}x its throughput, "
        f"{ratio(flat_out.cpu_s_per_1k, reference.cpu_s_per_1k):.2f}x its CPU. "
        f"Medians of {RUNS} interleaved runs each; every run answered every message, in order: "
        f"{'yes' if complete else '**no**'}. Mock LLM at {LATENCY_MS:.0f} ms, "
        f"{IN_FLIGHT} calls in flight, {PARTITIONS} partitions. Machine: {host['cores']} cores, "
        f"{host['cpu_model']}, Python {host['python']}, {host['date']}.",
        "",
        "The standard load's texts differ only in their numbers, so the models read each wording once",
        "and remember it (`SignalModels.read`); with every wording new (a made-up word at the end of",
        "each text) they run on every message, and the tokenizer meets a new word each time too.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run both settings and write bench/results/embedded.{json,md}."""
    messages, conversations, log_dir = standard_load("python -m bench.embedded", __doc__, "embedded")
    host = machine()
    flat_out, reference, sides = asyncio.run(run_sides(messages, conversations, log_dir))
    document = {
        "machine": host,
        "targets": TARGETS,
        "sustained_per_s": flat_out.msg_per_s,
        "flat_out": asdict(flat_out),
        "reference_flat_out": asdict(reference),
        **{side: asdict(result) for side, result in sides.items()},
    }
    save("embedded", document, markdown(flat_out, reference, sides, host))


if __name__ == "__main__":
    main()
