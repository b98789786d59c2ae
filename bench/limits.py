"""`python -m bench.limits`: the worker at the provider's limits, adaptive against a fixed limit,
beside the reference worker flat out.

First the reference worker (bench/reference.py) and then the worker answer the standard load
(2,000 messages over 200 conversations, 8 partitions, the mock LLM at 200 ms) with no provider
limit: what this machine can do today, whatever the provider allows; the targets are shares of the
reference's figure. Then each scenario runs twice: with the adaptive concurrency limit (the
default) and with `ENRICHER_LLM_ADAPTIVE=off` (a fixed `ENRICHER_MAX_IN_FLIGHT`). Writes
bench/results/limits.md and limits.json.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import machine, ratio, save, standard_load
from bench.scenarios import Load, LoadResult, run_load
from bench.stack import Stack

LATENCY_MS = 200.0
IN_FLIGHT = 64
PARTITIONS = 8
MAX_REFUSED_PER_MESSAGE = 0.1


@dataclass(frozen=True)
class Scenario:
    """A provider limit, what the worker should reach under it, and the mock config that makes it."""

    name: str
    limit: str
    share: float | None
    """Wanted msg/s: this share of the lower of `cap_per_s` and (with `of_reference`) the
    reference's flat-out throughput; None: no throughput target."""
    mock: dict[str, Any]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    cap_per_s: float | None = None
    of_reference: bool = True
    max_calls_per_message: float | None = None
    rate_of_reference: float | None = None
    """Offered at this share of the reference's flat-out throughput; None: flat out."""
    max_p99_ms: float | None = None
    baseline_env: dict[str, str] = dataclasses.field(default_factory=lambda: {"ENRICHER_LLM_ADAPTIVE": "off"})
    """What the worker did before it adapted: a fixed limit (and here no first-token deadline)."""

    def wanted_per_s(self, reference_per_s: float) -> float | None:
        """The throughput wanted, given the reference's flat out."""
        if self.share is None:
            return None
        ceilings = [self.cap_per_s, reference_per_s if self.of_reference else None]
        return self.share * min(ceiling for ceiling in ceilings if ceiling is not None)

    def wanted_text(self, reference_per_s: float) -> str:
        """The targets, worded."""
        parts = []
        wanted = self.wanted_per_s(reference_per_s)
        if wanted is not None:
            if not self.of_reference:
                of = f"{self.cap_per_s:.0f}/s"
            elif self.cap_per_s is None:
                of = f"the reference's {reference_per_s:.0f}"
            else:
                of = f"min({self.cap_per_s:.0f}, the reference's {reference_per_s:.0f})"
            parts.append(f"≥ {wanted:.0f} msg/s ({self.share:g} x {of})")
        if self.max_p99_ms is not None:
            parts.append(f"p99 < {self.max_p99_ms:.0f} ms")
        if self.max_calls_per_message is not None:
            parts.append(f"≤ {self.max_calls_per_message} calls per message")
        parts.append(f"≤ {MAX_REFUSED_PER_MESSAGE} refused per message")
        return ", ".join(parts)


HUNG_BASELINE = {"ENRICHER_LLM_ADAPTIVE": "off", "ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S": "30"}
SCENARIOS = (
    Scenario(
        "request-quota",
        "150 requests/s, 429 + Retry-After beyond",
        0.9,
        {"request_quota_per_s": 150},
        cap_per_s=150.0,
        of_reference=False,
    ),
    Scenario(
        "concurrency-quota",
        "40 calls in flight, 429 + Retry-After 1 s beyond",
        0.9,
        {"concurrency_quota": 40},
        cap_per_s=40 / (LATENCY_MS / 1000),
    ),
    Scenario(
        "hung-calls",
        "2% of calls hang (headers never come), default timeouts",
        0.8,
        {"hang_rate": 0.02},
        baseline_env=HUNG_BASELINE,
    ),
    Scenario(
        "hung-calls-half-load",
        "2% of calls hang, default timeouts, at half the reference's flat-out throughput",
        None,
        {"hang_rate": 0.02},
        rate_of_reference=0.5,
        max_p99_ms=2000.0,
        baseline_env=HUNG_BASELINE,
    ),
    Scenario(
        "exhausted-main-model",
        "main model's quota used up (insufficient_quota), one healthy fallback model",
        0.9,
        {"exhausted_models": ["gpt-4o-mini"]},
        {"ENRICHER_FALLBACK_MODELS": "gpt-4o"},
        max_calls_per_message=1.1,
    ),
)


def judge(
    scenario: Scenario, adaptive: LoadResult, fixed: LoadResult, reference_per_s: float
) -> dict[str, Any]:
    """Targets of one scenario, with the fixed-limit run beside the adaptive one."""
    messages = adaptive.load.messages
    refused = adaptive.mock_refused / messages
    calls = adaptive.mock_calls / messages
    wanted = scenario.wanted_per_s(reference_per_s)
    passed = (
        (scenario.max_p99_ms is None or adaptive.latency.p99_ms < scenario.max_p99_ms)
        and adaptive.complete
        and (wanted is None or adaptive.throughput_per_s >= wanted)
        and adaptive.verdict.clean
        and fixed.verdict.clean
        and refused <= MAX_REFUSED_PER_MESSAGE
        and (scenario.max_calls_per_message is None or calls <= scenario.max_calls_per_message)
    )
    rate = adaptive.load.rate_per_s
    return {
        "scenario": scenario.name,
        "limit": scenario.limit + (f" ({rate:.0f} msg/s)" if rate else ""),
        "wanted": scenario.wanted_text(reference_per_s),
        "wanted_msg_per_s": wanted,
        "adaptive": summary(adaptive, reference_per_s),
        "fixed": summary(fixed, reference_per_s),
        "passed": passed,
    }


def summary(run: LoadResult, reference_per_s: float | None = None) -> dict[str, Any]:
    """The figures of one run that the table shows."""
    messages = run.load.messages
    verdict = run.verdict
    return {
        "msg_per_s": round(run.throughput_per_s, 1),
        "of_reference": None
        if reference_per_s is None
        else round(ratio(run.throughput_per_s, reference_per_s), 2),
        "refused_per_message": round(run.mock_refused / messages, 3),
        "calls_per_message": round(run.mock_calls / messages, 2),
        "p99_ms": round(run.latency.p99_ms),
        "worker_cpu_s_per_1k": round(run.worker_cpu_s_per_1k, 2),
        "lost_dup_order": f"{verdict.lost} / {verdict.duplicated} / {verdict.out_of_order}",
        "complete": run.complete,
    }


def markdown(
    rows: list[dict[str, Any]], free: dict[str, Any], reference: dict[str, Any], host: dict[str, Any]
) -> str:
    """The table of scenarios, adaptive beside fixed, each as a share of the reference flat out."""
    lines = [
        "| provider limit | wanted | adaptive msg/s ÷ the reference's flat out "
        "| adaptive: msg/s, refused/msg, calls/msg, p99 ms, lost/dup/order "
        "| before (a fixed limit; for hung calls, no first-token deadline either): the same, "
        "and ÷ the reference's | |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = []
        for kind in ("adaptive", "fixed"):
            figures = row[kind]
            cells.append(
                f"{figures['msg_per_s']}, {figures['refused_per_message']}, {figures['calls_per_message']}, "
                f"{figures['p99_ms']}, {figures['lost_dup_order']}"
                + ("" if figures["complete"] else " (timed out)")
            )
        verdict = "pass" if row["passed"] else "**miss**"
        lines.append(
            f"| {row['limit']} | {row['wanted']} | {row['adaptive']['of_reference']:.2f} | {cells[0]} "
            f"| {cells[1]}; {row['fixed']['of_reference']:.2f} | {verdict} |"
        )
    lines += [
        "",
        "| no provider limit, flat out | msg/s | p99 ms | worker CPU s per 1k | lost/dup/order |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {who} | {figures['msg_per_s']} | {figures['p99_ms']} | {figures['worker_cpu_s_per_1k']} "
            f"| {figures['lost_dup_order']}" + ("" if figures["complete"] else " (timed out)") + " |"
            for who, figures in (("the reference (bench/reference.py)", reference), ("the worker", free))
        ),
        "",
        f"The worker flat out with no provider limit: {free['of_reference']:.2f} of the reference's "
        f"throughput, in the same run. The reference is the job and nothing else, one plain "
        f"aiokafka loop on the worker's settings: what this machine can do today, whatever the "
        f"provider allows; the machines here differ 2x from day to day, so the targets are shares of it.",
        "",
        f"Mock LLM at {LATENCY_MS:.0f} ms, ENRICHER_MAX_IN_FLIGHT={IN_FLIGHT}, {PARTITIONS} partitions. "
        f"Machine: {host['cores']} cores, {host['cpu_model']}, Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


async def run_all(
    messages: int, conversations: int, log_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The reference and the worker flat out with no limit, then every scenario, adaptive then
    fixed, on one stack."""
    rows = []
    async with Stack(log_dir, LATENCY_MS) as stack:
        free_load = Load("no-limit", messages, conversations, IN_FLIGHT)
        print("bench: no provider limit, the reference ...", flush=True)
        reference = await run_load(stack, free_load.on("reference"), PARTITIONS)
        reference_per_s = reference.throughput_per_s
        print("bench: no provider limit, the worker ...", flush=True)
        free = await run_load(stack, free_load, PARTITIONS)
        for scenario in SCENARIOS:
            rate = (
                None if scenario.rate_of_reference is None else scenario.rate_of_reference * reference_per_s
            )
            runs = []
            for kind, env in (("adaptive", {}), ("fixed", scenario.baseline_env)):
                print(f"bench: {scenario.name}, {kind} ...", flush=True)
                load = Load(
                    f"{scenario.name}-{kind}",
                    messages,
                    conversations,
                    IN_FLIGHT,
                    rate,
                    env=scenario.env | env,
                    mock=scenario.mock,
                )
                runs.append(await run_load(stack, load, PARTITIONS))
            adaptive, fixed = runs
            rows.append(judge(scenario, adaptive, fixed, reference_per_s))
    return rows, summary(free, reference_per_s), summary(reference, reference_per_s)


def main() -> None:
    """Run the scenarios and write bench/results/limits.{json,md}."""
    messages, conversations, log_dir = standard_load("python -m bench.limits", __doc__, "limits")
    host = machine()
    rows, free, reference = asyncio.run(run_all(messages, conversations, log_dir))
    document = {"machine": host, "scenarios": rows, "no_limit": free, "reference_no_limit": reference}
    save("limits", document, markdown(rows, free, reference, host))


if __name__ == "__main__":
    main()
