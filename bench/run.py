"""`make bench` entry point: `python -m bench.run [--messages N] [--conversations M] ... [--quick]`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
from pathlib import Path

from bench.report import RESULTS_DIR, Reference, Results, machine, write
from bench.scenarios import WORKERS, Load, Params, run_paired, run_stall
from bench.stack import Stack

QUICK = {
    "messages": 600,
    "conversations": 60,
    "baseline_messages": 40,
    "baseline_conversations": 10,
    "half_load_s": 4.0,
    "stall_messages": 5000,
    "stall_s": 8.0,
    "repeats": 1,
}


def odd_count(text: str) -> int:
    """An odd number of runs, 1 or more, so that one run is the median."""
    count = int(text)
    if count < 1 or count % 2 == 0:
        raise argparse.ArgumentTypeError(f"{text} is not an odd number of runs (1, 3, 5 ...)")
    return count


def parse_params(argv: list[str] | None = None) -> Params:
    """Command-line options as Params; `--quick` shrinks whatever was not given explicitly."""
    defaults = Params()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--messages", type=int, help=f"throughput run size (default {defaults.messages})")
    parser.add_argument("--conversations", type=int, help=f"(default {defaults.conversations})")
    parser.add_argument(
        "--latency-ms", type=float, help=f"mock LLM latency (default {defaults.latency_ms:.0f})"
    )
    parser.add_argument(
        "--in-flight", type=int, help=f"ENRICHER_MAX_IN_FLIGHT (default {defaults.in_flight})"
    )
    parser.add_argument(
        "--repeats",
        type=odd_count,
        help=f"runs of the throughput and half-load scenarios, odd (default {defaults.repeats})",
    )
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    args = parser.parse_args(argv)
    chosen = {
        name: value
        for name, value in vars(args).items()
        if value is not None and name in {field.name for field in dataclasses.fields(Params)}
    }
    return dataclasses.replace(defaults, **((QUICK if args.quick else {}) | chosen))


async def run_all(params: Params, log_dir: Path) -> Results:
    """Start the stack once and run every scenario on it, each with its own worker and topics;
    each run of the worker follows one of the reference (bench/reference.py) on the same load."""
    half_rate = params.physical_per_s / 2
    throughput = Load("throughput", params.messages, params.conversations, params.in_flight)
    baseline = Load("baseline", params.baseline_messages, params.baseline_conversations, 1)
    half_load = Load(
        "half-load",
        round(half_rate * params.half_load_s),
        params.conversations,
        params.in_flight,
        half_rate,
    )
    # Every setting at its default: messages that queued behind a reply are answered by the next.
    coalesced = dataclasses.replace(
        throughput, name="throughput-coalesced", env={"ENRICHER_COALESCE": "queued"}
    )
    async with Stack(log_dir, params.latency_ms) as stack:
        throughput_runs = await run_paired(stack, throughput, params.repeats, params.partitions)
        coalesced_runs = await run_paired(stack, coalesced, params.repeats, params.partitions)
        baseline_runs = await run_paired(stack, baseline, 1, params.partitions)
        half_load_runs = await run_paired(stack, half_load, params.repeats, params.partitions)
        stalls = {}
        for kind in WORKERS:
            print(
                f"bench: stall ({kind}): {params.stall_messages} messages behind a hanging LLM ...",
                flush=True,
            )
            stalls[kind] = await run_stall(
                stack,
                params.stall_messages,
                params.conversations,
                params.partitions,
                params.stall_s,
                params.sample_every_s,
                kind,
            )
    return Results(
        params,
        throughput_runs.enricher,
        baseline_runs.enricher[0],
        half_load_runs.enricher,
        stalls["enricher"],
        Reference(
            throughput_runs.reference,
            baseline_runs.reference[0],
            half_load_runs.reference,
            stalls["reference"],
            coalesced_runs.reference,
        ),
        coalesced_runs.enricher,
    )


def main(argv: list[str] | None = None) -> None:
    """Run the bench, write bench/results/latest.{json,md} and print the tables."""
    params = parse_params(argv)
    host = machine()
    log_dir = Path(tempfile.mkdtemp(prefix="enricher-bench-"))
    print(f"bench: logs in {log_dir}", flush=True)
    results = asyncio.run(run_all(params, log_dir))
    print(write(results, host, RESULTS_DIR))


if __name__ == "__main__":
    main()
