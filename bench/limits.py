"""`python -m bench.limits`: the worker at the provider's limits, adaptive against a fixed limit.

Each scenario runs twice in the same run, against the mock LLM at 200 ms: with the adaptive
concurrency limit (the default) and with `ENRICHER_LLM_ADAPTIVE=off` (a fixed
`ENRICHER_MAX_IN_FLIGHT`), on the standard load of 2,000 messages over 200 conversations and
8 partitions. Writes bench/results/limits.md and limits.json.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import machine, save, standard_load
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
    possible_per_s: float
    wanted_share: float
    mock: dict[str, Any]
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    max_calls_per_message: float | None = None
    rate_per_s: float | None = None
    """Offered at this rate (then the target is the p99 latency); None: flat out."""
    max_p99_ms: float | None = None
    baseline_env: dict[str, str] = dataclasses.field(default_factory=lambda: {"ENRICHER_LLM_ADAPTIVE": "off"})
    """What the worker did before it adapted: a fixed limit (and here no first-token deadline)."""


SCENARIOS = (
    Scenario(
        "request-quota",
        "150 requests/s, 429 + Retry-After beyond",
        150.0,
        0.9,
        {"request_quota_per_s": 150},
    ),
    Scenario(
        "concurrency-quota",
        "40 calls in flight, 429 + Retry-After 1 s beyond",
        40 / (LATENCY_MS / 1000),
        0.9,
        {"concurrency_quota": 40},
    ),
    Scenario(
        "hung-calls",
        "2% of calls hang (headers never come), default timeouts",
        IN_FLIGHT / (LATENCY_MS / 1000),
        0.8,
        {"hang_rate": 0.02},
        baseline_env={"ENRICHER_LLM_ADAPTIVE": "off", "ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S": "30"},
    ),
    Scenario(
        "hung-calls-half-load",
        "2% of calls hang, default timeouts, half load (160 msg/s)",
        IN_FLIGHT / (LATENCY_MS / 1000) / 2,
        0.9,
        {"hang_rate": 0.02},
        rate_per_s=IN_FLIGHT / (LATENCY_MS / 1000) / 2,
        max_p99_ms=2000.0,
        baseline_env={"ENRICHER_LLM_ADAPTIVE": "off", "ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S": "30"},
    ),
    Scenario(
        "exhausted-main-model",
        "main model's quota used up (insufficient_quota), one healthy fallback model",
        IN_FLIGHT / (LATENCY_MS / 1000),
        0.85,
        {"exhausted_models": ["gpt-4o-mini"]},
        {"ENRICHER_FALLBACK_MODELS": "gpt-4o"},
        max_calls_per_message=1.1,
    ),
)


def judge(scenario: Scenario, adaptive: LoadResult, fixed: LoadResult) -> dict[str, Any]:
    """Targets of one scenario, with the fixed-limit run beside the adaptive one."""
    messages = adaptive.load.messages
    refused = adaptive.mock_refused / messages
    calls = adaptive.mock_calls / messages
    wanted = scenario.wanted_share * scenario.possible_per_s
    fast_enough = scenario.max_p99_ms is None or adaptive.latency.p99_ms < scenario.max_p99_ms
    passed = (
        fast_enough
        and adaptive.complete
        and adaptive.throughput_per_s >= wanted
        and adaptive.verdict.clean
        and fixed.verdict.clean
        and (scenario.max_calls_per_message is not None or refused <= MAX_REFUSED_PER_MESSAGE)
        and (scenario.max_calls_per_message is None or calls <= scenario.max_calls_per_message)
    )
    return {
        "scenario": scenario.name,
        "limit": scenario.limit,
        "wanted": f"≥ {wanted:.0f} msg/s"
        + (f", p99 < {scenario.max_p99_ms:.0f} ms" if scenario.max_p99_ms else "")
        + (
            f", ≤ {scenario.max_calls_per_message} calls per message"
            if scenario.max_calls_per_message
            else f", ≤ {MAX_REFUSED_PER_MESSAGE} refused per message"
        ),
        "adaptive": summary(adaptive),
        "fixed": summary(fixed),
        "passed": passed,
    }


def summary(run: LoadResult) -> dict[str, Any]:
    """The figures of one run that the table shows."""
    messages = run.load.messages
    verdict = run.verdict
    return {
        "msg_per_s": round(run.throughput_per_s, 1),
        "refused_per_message": round(run.mock_refused / messages, 3),
        "calls_per_message": round(run.mock_calls / messages, 2),
        "p99_ms": round(run.latency.p99_ms),
        "lost_dup_order": f"{verdict.lost} / {verdict.duplicated} / {verdict.out_of_order}",
        "complete": run.complete,
    }


def markdown(rows: list[dict[str, Any]], free: dict[str, Any], host: dict[str, Any]) -> str:
    """The table of scenarios, adaptive beside fixed."""
    lines = [
        "| provider limit | wanted | adaptive: msg/s, refused/msg, calls/msg, p99 ms, lost/dup/order "
        "| before (a fixed limit; for hung calls, no first-token deadline either): the same | |",
        "| --- | --- | --- | --- | --- |",
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
        lines.append(f"| {row['limit']} | {row['wanted']} | {cells[0]} | {cells[1]} | {verdict} |")
    lines += [
        "",
        f"The same load with no provider limit reached {free['msg_per_s']} msg/s on this machine "
        f"(p99 {free['p99_ms']} ms): what the worker can do here at most, whatever the provider allows.",
        "",
        f"Mock LLM at {LATENCY_MS:.0f} ms, ENRICHER_MAX_IN_FLIGHT={IN_FLIGHT}, {PARTITIONS} partitions. "
        f"Machine: {host['cores']} cores, {host['cpu_model']}, Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


async def run_all(
    messages: int, conversations: int, log_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every scenario, adaptive then fixed, on one stack; then the same load with no limit."""
    rows = []
    async with Stack(log_dir, LATENCY_MS) as stack:
        for scenario in SCENARIOS:
            runs = []
            for kind, env in (("adaptive", {}), ("fixed", scenario.baseline_env)):
                print(f"bench: {scenario.name}, {kind} ...", flush=True)
                load = Load(
                    f"{scenario.name}-{kind}",
                    messages,
                    conversations,
                    IN_FLIGHT,
                    scenario.rate_per_s,
                    env=scenario.env | env,
                    mock=scenario.mock,
                )
                runs.append(await run_load(stack, load, PARTITIONS))
            rows.append(judge(scenario, *runs))
        print("bench: no provider limit (this machine's reference) ...", flush=True)
        free = await run_load(stack, Load("no-limit", messages, conversations, IN_FLIGHT), PARTITIONS)
    return rows, summary(free)


def main() -> None:
    """Run the scenarios and write bench/results/limits.{json,md}."""
    messages, conversations, log_dir = standard_load("python -m bench.limits", __doc__, "limits")
    host = machine()
    rows, free = asyncio.run(run_all(messages, conversations, log_dir))
    save("limits", {"machine": host, "scenarios": rows, "no_limit": free}, markdown(rows, free, host))


if __name__ == "__main__":
    main()
