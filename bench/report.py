"""Bench results as files: targets judged, `latest.json` with every figure, `latest.md` with the tables."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.scenarios import LoadResult, Params, StallResult

THROUGHPUT_SHARE = 0.85
LATENCY_HEADROOM_MS = 100.0
CPU_S_PER_1K = 2.0
PEAK_RSS_MB = 250.0
FLAT_RSS_MB = 10.0  # growth allowed once the buffer is full
SHARED_CORES_NOTE = (
    "The load generator, the reply reader and checker, the mock LLM, the broker and Redis share "
    "these cores with the worker, so every figure is a lower bound for a worker on its own machine."
)


@dataclass(frozen=True)
class Results:
    """Everything one bench run measured."""

    params: Params
    throughput: LoadResult
    baseline: LoadResult
    half_load: LoadResult
    stall: StallResult

    @property
    def loads(self) -> tuple[LoadResult, ...]:
        """The load scenarios, in the order they ran."""
        return (self.throughput, self.baseline, self.half_load)


@dataclass(frozen=True)
class Row:
    """One target: what it asks, what was measured, and whether it holds (None: information only)."""

    target: str
    wanted: str
    measured: str
    passed: bool | None


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


def targets(results: Results) -> list[Row]:
    """The issue's targets, judged against this run."""
    params, fast, base, half, stall = (results.params, *results.loads, results.stall)
    limit = params.physical_per_s
    share = fast.throughput_per_s / limit
    p99_bound = params.latency_ms + LATENCY_HEADROOM_MS
    peak = max(stall.worker_peak_rss_mb, *(result.worker_peak_rss_mb for result in results.loads))
    rows = [
        Row(
            f"Throughput ({params.in_flight} in flight ÷ {params.latency_ms:.0f} ms = {limit:.0f} msg/s)",
            f"≥ {THROUGHPUT_SHARE * limit:.0f} msg/s ({THROUGHPUT_SHARE:.0%})",
            f"{fast.throughput_per_s:.0f} msg/s ({share:.0%})",
            share >= THROUGHPUT_SHARE and fast.complete,
        )
    ]
    for result in results.loads:
        verdict = result.verdict
        rows.append(
            Row(
                f"Lost / duplicated / out of order ({result.load.name})",
                "0 / 0 / 0",
                f"{verdict.lost} / {verdict.duplicated} / {verdict.out_of_order}",
                verdict.clean,
            )
        )
    rows += [
        Row(
            "Speed-up over the sequential baseline (in flight = 1)",
            "—",
            f"{fast.throughput_per_s / base.throughput_per_s:.1f}x "
            f"({fast.throughput_per_s:.0f} vs {base.throughput_per_s:.1f} msg/s)",
            None,
        ),
        Row(
            f"p99 end-to-end latency at half load ({half.load.rate_per_s:.0f} msg/s)",
            f"≤ {p99_bound:.0f} ms",
            f"{half.latency.p99_ms:.0f} ms (p50 {half.latency.p50_ms:.0f}, p95 {half.latency.p95_ms:.0f})",
            half.latency.p99_ms <= p99_bound and half.complete,
        ),
        Row(
            "Worker CPU per 1,000 messages (throughput run)",
            f"≤ {CPU_S_PER_1K:.1f} s",
            f"{fast.worker_cpu_s_per_1k:.2f} s",
            fast.worker_cpu_s_per_1k <= CPU_S_PER_1K,
        ),
        Row(
            "Worker peak RSS (VmHWM, all scenarios)",
            f"≤ {PEAK_RSS_MB:.0f} MB",
            f"{peak:.0f} MB",
            peak <= PEAK_RSS_MB,
        ),
        Row(
            f"RSS flat while {stall.messages:,} messages wait behind a stalled LLM",
            f"≤ +{FLAT_RSS_MB:.0f} MB after the buffer is full",
            f"{stall.samples[0].rss_mb:.0f} → peak {max(s.rss_mb for s in stall.samples):.0f} → "
            f"end {stall.samples[-1].rss_mb:.0f} MB ({stall_growth_mb(stall):+.1f} MB)",
            stall_growth_mb(stall) <= FLAT_RSS_MB,
        ),
        Row(
            "Buffered events during the stall (`enricher_buffered_events`)",
            f"at the bound, {stall.buffered_bound}",
            f"end {stall.samples[-1].buffered:.0f}, max {max(s.buffered for s in stall.samples):.0f}",
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


def markdown(results: Results, rows: list[Row], host: dict[str, str | int | None]) -> str:
    """The targets table, the per-scenario table and the machine line."""
    verdicts = {True: "pass", False: "**miss**", None: "info"}
    lines = ["| target | wanted | measured | |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.target} | {r.wanted} | {r.measured} | {verdicts[r.passed]} |" for r in rows]
    lines += [
        "",
        "| scenario | messages / conversations | in flight | offered | msg/s | p50 ms | p95 ms | p99 ms "
        "| lost / dup / order | worker CPU s per 1k | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results.loads:
        load, lat, verdict = result.load, result.latency, result.verdict
        offered = f"{load.rate_per_s:.0f} msg/s" if load.rate_per_s else "flat out"
        lines.append(
            f"| {load.name} | {load.messages} / {load.conversations} | {load.max_in_flight} | {offered} "
            f"| {result.throughput_per_s:.1f} | {lat.p50_ms:.0f} | {lat.p95_ms:.0f} | {lat.p99_ms:.0f} "
            f"| {verdict.lost} / {verdict.duplicated} / {verdict.out_of_order} "
            f"| {result.worker_cpu_s_per_1k:.2f} | {result.worker_peak_rss_mb:.0f} |"
        )
    fast = results.throughput
    cpu = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in fast.cpu_s.items())
    busy = fast.cpu_s["worker"] / fast.duration_s
    lines += [
        "",
        f"CPU seconds during the {fast.duration_s:.1f} s throughput run on {host['cores']} cores: {cpu}; "
        f"the worker's one event loop was busy {busy:.0%} of the time. "
        f"The mock LLM saw at most {fast.mock_max_in_flight} calls in flight.",
        "",
        f"Machine: {host['cores']} cores, {host['cpu_model']}, Python {host['python']}, "
        f"Linux {host['kernel']}, {host['date']}" + (" (quick run)" if results.params.quick else "") + ".",
        SHARED_CORES_NOTE,
    ]
    return "\n".join(lines) + "\n"


def write(results: Results, host: dict[str, str | int | None], directory: Path) -> str:
    """Write `latest.json` and `latest.md` into `directory`; returns the Markdown."""
    rows = targets(results)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": host,
        "params": dataclasses.asdict(results.params),
        "targets": [dataclasses.asdict(row) for row in rows],
        "results": {
            field.name: dataclasses.asdict(getattr(results, field.name))
            for field in dataclasses.fields(results)
            if field.name != "params"
        },
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
