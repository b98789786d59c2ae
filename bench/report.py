"""Bench results as files: targets judged, `latest.json` with every figure, `latest.md` with the tables."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.scenarios import LoadResult, Params, StallResult

RESULTS_DIR = Path(__file__).resolve().parent / "results"
THROUGHPUT_SHARE = 0.85
LATENCY_HEADROOM_MS = 100.0
# Against the reference worker (bench/reference.py) on the same load in the same run.
THROUGHPUT_OF_REFERENCE = 0.95
CPU_OF_REFERENCE = 1.0
P99_OVER_REFERENCE_MS = 50.0
PEAK_RSS_MB = 250.0
FLAT_RSS_MB = 10.0  # growth allowed once the buffer is full
SHARED_CORES_NOTE = (
    "The load generator, the reply reader and checker, the mock LLM, the broker and Redis share "
    "these cores with the worker, so every figure is a lower bound for a worker on its own machine."
)
REFERENCE_NOTE = (
    "The reference is bench/reference.py: the job and nothing else (consume, read the profile and "
    "history, stream the LLM's answer, store and publish the reply, commit in order), one plain "
    "aiokafka loop on the worker's settings. Each run of the worker follows one of the reference on "
    "the same load in the same run; the machines here differ 2x from day to day, so a ratio to the "
    "reference is what compares across runs."
)


@dataclass(frozen=True)
class Reference:
    """The reference worker's runs of the same scenarios, in the same bench run (bench/reference.py)."""

    throughput: tuple[LoadResult, ...]
    baseline: LoadResult
    half_load: tuple[LoadResult, ...]
    stall: StallResult
    coalesced: tuple[LoadResult, ...] = ()
    """Beside the worker's runs with `ENRICHER_COALESCE` at its default; the reference answers
    each message on its own, as it does in `throughput`."""

    @property
    def scenarios(self) -> tuple[tuple[LoadResult, ...], ...]:
        """The runs of each load scenario, in the order they ran."""
        return tuple(
            runs for runs in (self.throughput, (self.baseline,), self.half_load, self.coalesced) if runs
        )


@dataclass(frozen=True)
class Results:
    """Everything one bench run measured."""

    params: Params
    throughput: tuple[LoadResult, ...]
    baseline: LoadResult
    half_load: tuple[LoadResult, ...]
    stall: StallResult
    reference: Reference
    coalesced: tuple[LoadResult, ...] = ()
    """The throughput load with `ENRICHER_COALESCE` at its default (`queued`): what queued
    behind a reply is answered by the next one; figures per message answered."""

    @property
    def scenarios(self) -> tuple[tuple[LoadResult, ...], ...]:
        """The runs of each load scenario, in the order they ran."""
        return tuple(
            runs for runs in (self.throughput, (self.baseline,), self.half_load, self.coalesced) if runs
        )

    @property
    def loads(self) -> tuple[LoadResult, ...]:
        """Every run of the load scenarios, in the order they ran."""
        return tuple(run for runs in self.scenarios for run in runs)


@dataclass(frozen=True)
class Row:
    """One target: what it asks, what was measured, and whether it holds (None: information only)."""

    target: str
    wanted: str
    measured: str
    passed: bool | None


def standard_load(prog: str, description: str | None, name: str) -> tuple[int, int, Path]:
    """A scenario bench's options: messages and conversations (the standard load, 2,000 over
    200, by default), and a fresh directory for the logs of this run, printed."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=200)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix=f"enricher-bench-{name}-"))
    print(f"bench: logs in {log_dir}", flush=True)
    return args.messages, args.conversations, log_dir


def save(name: str, document: Mapping[str, Any], text: str) -> None:
    """Write bench/results/{name}.json and {name}.md, and print the Markdown."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(text)
    print(text)


def machine() -> dict[str, str | int | None]:
    """Cores, CPU model, Python, kernel, load average and date, taken when the run starts."""
    model = None
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_1m_at_start": f"{os.getloadavg()[0]:.2f}",
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def stall_growth_mb(stall: StallResult) -> float:
    """RSS growth from a quarter into the stall window (the buffer is full by then) to its end."""
    samples = stall.samples
    return samples[-1].rss_mb - samples[len(samples) // 4].rss_mb


def median_run(runs: Sequence[LoadResult], measure: Callable[[LoadResult], float]) -> LoadResult:
    """The run whose `measure` is the median of an odd number of runs."""
    return sorted(runs, key=measure)[(len(runs) - 1) // 2]


def each_run(runs: Sequence[LoadResult], measure: Callable[[LoadResult], float], spec: str, unit: str) -> str:
    """`; runs: a, b, c unit`, the `measure` of each run formatted by `spec`; "" for a single run."""
    if len(runs) == 1:
        return ""
    return f"; runs: {', '.join(format(measure(run), spec) for run in runs)} {unit}"


def each_pair(
    runs: Sequence[LoadResult],
    references: Sequence[LoadResult],
    measure: Callable[[LoadResult], float],
    spec: str,
    unit: str,
) -> str:
    """`; runs (worker / reference): a / b, c / d unit`; "" for a single run."""
    if len(runs) == 1:
        return ""
    pairs = ", ".join(
        f"{format(measure(run), spec)} / {format(measure(ref), spec)}"
        for run, ref in zip(runs, references, strict=True)
    )
    return f"; runs (worker / reference): {pairs} {unit}"


def ratio(value: float, reference: float) -> float:
    """`value` as a multiple of the reference's (NaN without a reference figure)."""
    return value / reference if reference else math.nan


def _over(runs: Sequence[LoadResult]) -> str:
    return f", over {len(runs)} runs" if len(runs) > 1 else ""


def targets(results: Results) -> list[Row]:
    """The issue's targets, judged on the median run of each repeated scenario; those relative to
    the reference compare the worker's median run with the reference's."""
    params, base, stall, ref = results.params, results.baseline, results.stall, results.reference
    fast = median_run(results.throughput, lambda run: run.throughput_per_s)
    ref_fast = median_run(ref.throughput, lambda run: run.throughput_per_s)
    frugal = median_run(results.throughput, lambda run: run.worker_cpu_s_per_1k)
    ref_frugal = median_run(ref.throughput, lambda run: run.worker_cpu_s_per_1k)
    half = median_run(results.half_load, lambda run: run.latency.p99_ms)
    ref_half = median_run(ref.half_load, lambda run: run.latency.p99_ms)
    limit = params.physical_per_s
    share = fast.throughput_per_s / limit
    p99_bound = params.latency_ms + LATENCY_HEADROOM_MS
    peak = max(stall.worker_peak_rss_mb, *(result.worker_peak_rss_mb for result in results.loads))
    ref_peak = max(
        ref.stall.worker_peak_rss_mb, *(run.worker_peak_rss_mb for runs in ref.scenarios for run in runs)
    )
    speed = ratio(fast.throughput_per_s, ref_fast.throughput_per_s)
    cpu = ratio(frugal.worker_cpu_s_per_1k, ref_frugal.worker_cpu_s_per_1k)
    p99_over = half.latency.p99_ms - ref_half.latency.p99_ms
    rows = [
        Row(
            f"Throughput ({params.in_flight} in flight ÷ {params.latency_ms:.0f} ms = {limit:.0f} msg/s)",
            f"≥ {THROUGHPUT_SHARE * limit:.0f} msg/s ({THROUGHPUT_SHARE:.0%})",
            f"{fast.throughput_per_s:.0f} msg/s ({share:.0%})"
            + each_run(results.throughput, lambda run: run.throughput_per_s, ".0f", "msg/s"),
            share >= THROUGHPUT_SHARE and all(run.complete for run in results.throughput),
        ),
        Row(
            "Flat-out throughput against the reference's (same run)",
            f"≥ {THROUGHPUT_OF_REFERENCE:g}x the reference's",
            f"{speed:.2f}x ({fast.throughput_per_s:.0f} vs {ref_fast.throughput_per_s:.0f} msg/s)"
            + each_pair(results.throughput, ref.throughput, lambda run: run.throughput_per_s, ".0f", "msg/s"),
            speed >= THROUGHPUT_OF_REFERENCE and all(run.complete for run in results.throughput),
        ),
    ]
    for runs in results.scenarios:
        lost = sum(run.verdict.lost for run in runs)
        duplicated = sum(run.verdict.duplicated for run in runs)
        out_of_order = sum(run.verdict.out_of_order for run in runs)
        rows.append(
            Row(
                f"Lost / duplicated / out of order ({runs[0].load.name}{_over(runs)})",
                "0 / 0 / 0",
                f"{lost} / {duplicated} / {out_of_order}",
                all(run.verdict.clean for run in runs),
            )
        )
    ref_runs = [run for runs in ref.scenarios for run in runs]
    rows += [
        Row(
            f"Lost / duplicated / out of order (the reference, all {len(ref_runs)} runs)",
            "0 / 0 / 0 (else its figures compare with nothing)",
            " / ".join(
                str(sum(getattr(run.verdict, name) for run in ref_runs))
                for name in ("lost", "duplicated", "out_of_order")
            ),
            all(run.verdict.clean and run.complete for run in ref_runs),
        ),
        Row(
            "Speed-up over the sequential baseline (in flight = 1)",
            "—",
            f"{fast.throughput_per_s / base.throughput_per_s:.1f}x "
            f"({fast.throughput_per_s:.0f} vs {base.throughput_per_s:.1f} msg/s; the reference "
            f"{ref_fast.throughput_per_s / ref.baseline.throughput_per_s:.1f}x, "
            f"{ref_fast.throughput_per_s:.0f} vs {ref.baseline.throughput_per_s:.1f} msg/s)",
            None,
        ),
        Row(
            f"p99 end-to-end latency at half load ({half.load.rate_per_s:.0f} msg/s)",
            f"≤ {p99_bound:.0f} ms",
            f"{half.latency.p99_ms:.0f} ms (p50 {half.latency.p50_ms:.0f}, p95 {half.latency.p95_ms:.0f})"
            + each_run(results.half_load, lambda run: run.latency.p99_ms, ".0f", "ms"),
            half.latency.p99_ms <= p99_bound and all(run.complete for run in results.half_load),
        ),
        Row(
            "p99 at half load against the reference's (same run)",
            f"≤ the reference's + {P99_OVER_REFERENCE_MS:.0f} ms",
            f"{p99_over:+.0f} ms ({half.latency.p99_ms:.0f} vs {ref_half.latency.p99_ms:.0f} ms)"
            + each_pair(results.half_load, ref.half_load, lambda run: run.latency.p99_ms, ".0f", "ms"),
            p99_over <= P99_OVER_REFERENCE_MS and all(run.complete for run in results.half_load),
        ),
        Row(
            "Worker CPU per 1,000 replies (throughput run) against the reference's (same run)",
            f"≤ {CPU_OF_REFERENCE:g}x the reference's",
            f"{cpu:.2f}x ({frugal.worker_cpu_s_per_1k:.2f} vs {ref_frugal.worker_cpu_s_per_1k:.2f} s)"
            + each_pair(results.throughput, ref.throughput, lambda run: run.worker_cpu_s_per_1k, ".2f", "s"),
            cpu <= CPU_OF_REFERENCE,
        ),
        *_coalesced_rows(results),
        Row(
            "Worker peak RSS (VmHWM, all scenarios)",
            f"≤ {PEAK_RSS_MB:.0f} MB",
            f"{peak:.0f} MB (the reference {ref_peak:.0f} MB)",
            peak <= PEAK_RSS_MB,
        ),
        Row(
            f"RSS flat while {stall.messages:,} messages wait behind a stalled LLM",
            f"≤ +{FLAT_RSS_MB:.0f} MB after the buffer is full",
            f"{stall.samples[0].rss_mb:.0f} → peak {max(s.rss_mb for s in stall.samples):.0f} → "
            f"end {stall.samples[-1].rss_mb:.0f} MB ({stall_growth_mb(stall):+.1f} MB; "
            f"the reference {stall_growth_mb(ref.stall):+.1f} MB)",
            stall_growth_mb(stall) <= FLAT_RSS_MB,
        ),
        Row(
            "Buffered events during the stall (`enricher_buffered_events`)",
            f"at the bound, {stall.buffered_bound}",
            f"end {stall.samples[-1].buffered:.0f}, max {max(s.buffered for s in stall.samples):.0f} "
            f"(the reference: end {ref.stall.samples[-1].buffered:.0f})",
            stall.samples[-1].buffered == stall.buffered_bound
            and max(s.buffered for s in stall.samples) <= stall.buffered_bound,
        ),
        Row(
            "Duplicated / out of order during the stall",
            "0 / 0",
            f"{stall.verdict.duplicated} / {stall.verdict.out_of_order} ({stall.verdict.replies} replies)",
            not (stall.verdict.duplicated or stall.verdict.out_of_order or stall.verdict.unexpected),
        ),
    ]
    return rows


def _coalesced_rows(results: Results) -> list[Row]:
    """The budget again with every setting at its default, `ENRICHER_COALESCE=queued` included:
    per message answered, beside the reference's runs of the same load."""
    if not results.coalesced:
        return []
    ref_runs = results.reference.coalesced
    fast = median_run(results.coalesced, lambda run: run.throughput_per_s)
    ref_fast = median_run(ref_runs, lambda run: run.throughput_per_s)
    frugal = median_run(results.coalesced, lambda run: run.worker_cpu_s_per_1k)
    ref_frugal = median_run(ref_runs, lambda run: run.worker_cpu_s_per_1k)
    speed = ratio(fast.throughput_per_s, ref_fast.throughput_per_s)
    cpu = ratio(frugal.worker_cpu_s_per_1k, ref_frugal.worker_cpu_s_per_1k)
    calls = fast.mock_calls / fast.load.messages
    return [
        Row(
            "With ENRICHER_COALESCE at its default: messages answered per second against the reference's",
            f"≥ {THROUGHPUT_OF_REFERENCE:g}x the reference's",
            f"{speed:.2f}x ({fast.throughput_per_s:.0f} vs {ref_fast.throughput_per_s:.0f} msg/s; "
            f"{calls:.2f} LLM calls per message)"
            + each_pair(results.coalesced, ref_runs, lambda run: run.throughput_per_s, ".0f", "msg/s"),
            speed >= THROUGHPUT_OF_REFERENCE and all(run.complete for run in results.coalesced),
        ),
        Row(
            "With ENRICHER_COALESCE at its default: worker CPU per 1,000 messages answered, against the "
            "reference's",
            f"≤ {CPU_OF_REFERENCE:g}x the reference's",
            f"{cpu:.2f}x ({frugal.worker_cpu_s_per_1k:.2f} vs {ref_frugal.worker_cpu_s_per_1k:.2f} s)"
            + each_pair(results.coalesced, ref_runs, lambda run: run.worker_cpu_s_per_1k, ".2f", "s"),
            cpu <= CPU_OF_REFERENCE,
        ),
    ]


TABLE_COLUMNS = (
    "scenario",
    "messages / conversations",
    "in flight",
    "offered",
    "msg/s",
    "reference msg/s",
    "x ref",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "reference p99 ms",
    "p99 - ref ms",
    "lost / dup / order (reference)",
    "worker CPU s per 1k replies",
    "reference CPU s per 1k",
    "x ref",
    "peak RSS MB (reference)",
)


def run_labels(results: Results) -> list[tuple[str, LoadResult, LoadResult]]:
    """Each load run with the reference's run just before it and its scenario name, numbered
    `name n/N` where a scenario ran N > 1 times."""
    labelled = []
    for runs, references in zip(results.scenarios, results.reference.scenarios, strict=True):
        for number, (run, ref) in enumerate(zip(runs, references, strict=True), start=1):
            label = run.load.name if len(runs) == 1 else f"{run.load.name} {number}/{len(runs)}"
            labelled.append((label, run, ref))
    return labelled


def markdown(results: Results, rows: list[Row], host: dict[str, str | int | None]) -> str:
    """The targets table, the per-scenario table (each run beside the reference's) and the machine line."""
    verdicts = {True: "pass", False: "**miss**", None: "info"}
    lines = ["| target | wanted | measured | |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.target} | {r.wanted} | {r.measured} | {verdicts[r.passed]} |" for r in rows]
    lines += [
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + " --- |" * len(TABLE_COLUMNS),
    ]
    for label, result, ref in run_labels(results):
        load, lat, verdict, rv = result.load, result.latency, result.verdict, ref.verdict
        offered = f"{load.rate_per_s:.0f} msg/s" if load.rate_per_s else "flat out"
        lines.append(
            f"| {label} | {load.messages} / {load.conversations} | {load.max_in_flight} | {offered} "
            f"| {result.throughput_per_s:.1f} | {ref.throughput_per_s:.1f} "
            f"| {ratio(result.throughput_per_s, ref.throughput_per_s):.2f} "
            f"| {lat.p50_ms:.0f} | {lat.p95_ms:.0f} | {lat.p99_ms:.0f} | {ref.latency.p99_ms:.0f} "
            f"| {lat.p99_ms - ref.latency.p99_ms:+.0f} "
            f"| {verdict.lost} / {verdict.duplicated} / {verdict.out_of_order} "
            f"({rv.lost} / {rv.duplicated} / {rv.out_of_order}) "
            f"| {result.worker_cpu_s_per_1k:.2f} | {ref.worker_cpu_s_per_1k:.2f} "
            f"| {ratio(result.worker_cpu_s_per_1k, ref.worker_cpu_s_per_1k):.2f} "
            f"| {result.worker_peak_rss_mb:.0f} ({ref.worker_peak_rss_mb:.0f}) |"
        )
    fast = median_run(results.throughput, lambda run: run.worker_cpu_s_per_1k)
    ref_fast = median_run(results.reference.throughput, lambda run: run.worker_cpu_s_per_1k)
    lines += ["", *(_cpu_line(who, run) for who, run in (("worker", fast), ("reference", ref_fast)))]
    lines += [
        "",
        f"Machine: {host['cores']} cores, {host['cpu_model']}, Python {host['python']}, "
        f"Linux {host['kernel']}, {host['date']}" + (" (quick run)" if results.params.quick else "") + ".",
        SHARED_CORES_NOTE,
        "",
        REFERENCE_NOTE,
    ]
    return "\n".join(lines) + "\n"


def _cpu_line(who: str, run: LoadResult) -> str:
    cpu = ", ".join(
        f"{who if name == 'worker' else name} {seconds:.1f} s" for name, seconds in run.cpu_s.items()
    )
    busy = run.cpu_s["worker"] / run.duration_s
    return (
        f"CPU seconds during the {run.duration_s:.1f} s throughput run of median CPU of the {who}: {cpu}; "
        f"its one event loop was busy {busy:.0%} of the time. "
        f"The mock LLM saw at most {run.mock_max_in_flight} calls in flight."
    )


def write(results: Results, host: dict[str, str | int | None], directory: Path) -> str:
    """Write `latest.json` and `latest.md` into `directory`; returns the Markdown."""
    rows = targets(results)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": host,
        "params": dataclasses.asdict(results.params),
        "targets": [dataclasses.asdict(row) for row in rows],
        "results": {name: value for name, value in dataclasses.asdict(results).items() if name != "params"},
    }
    (directory / "latest.json").write_text(json.dumps(_finite(document), indent=2) + "\n")
    text = markdown(results, rows, host)
    (directory / "latest.md").write_text(text)
    return text


def _finite(value: object) -> object:
    """`value` with NaN and infinities replaced by None, so the JSON is strict."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
