"""`python -m bench.coalesce`: customers who type several lines quickly, answered with
`ENRICHER_COALESCE=queued` (what queued behind a reply is answered by the next one) against `off`
(one reply per message), in the same run.

The standard burst load: 2,000 messages in bursts of 5, 10 conversations at a time, each
conversation's lines 0.2 s apart (the pace is 50 msg/s), over a mock LLM answering in 1 s,
about what a chat model takes for a reply. Measured per setting: LLM calls per message, every
message answered once (its own reply or one whose `answers` lists it), replies out of order,
p50 and p99 from a message to the reply that answers it. Writes bench/results/coalesce.md and .json.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.report import machine, save, standard_load
from bench.scenarios import Load, LoadResult, run_load
from bench.stack import Stack

LATENCY_MS = 1000.0
IN_FLIGHT = 64
PARTITIONS = 8
BURST = 5
AT_ONCE = 10
RATE_PER_S = 50.0  # with AT_ONCE conversations interleaved: one conversation's lines 0.2 s apart
TARGET_CALLS_PER_MESSAGE = 0.6  # with queued


@dataclass(frozen=True)
class Side:
    """What one setting measured."""

    coalesce: str
    messages: int
    replies: int
    llm_calls: int
    calls_per_message: float
    lost: int
    duplicated: int
    out_of_order: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, coalesce: str, result: LoadResult) -> Side:
        """The figures of one load run."""
        verdict = result.verdict
        return cls(
            coalesce=coalesce,
            messages=verdict.inputs,
            replies=result.replies,
            llm_calls=result.mock_calls,
            calls_per_message=round(result.mock_calls / verdict.inputs, 3),
            lost=verdict.lost,
            duplicated=verdict.duplicated,
            out_of_order=verdict.out_of_order,
            p50_ms=round(result.latency.p50_ms, 1),
            p99_ms=round(result.latency.p99_ms, 1),
        )


async def run_both(messages: int, log_dir: Path) -> tuple[Side, Side]:
    """The burst load with coalescing on, then off, on one stack."""
    sides = {}
    async with Stack(log_dir, LATENCY_MS) as stack:
        for coalesce in ("queued", "off"):
            print(f"bench: bursts of {BURST} with ENRICHER_COALESCE={coalesce} ...", flush=True)
            load = Load(
                f"coalesce-{coalesce}",
                messages,
                AT_ONCE,
                IN_FLIGHT,
                RATE_PER_S,
                env={"ENRICHER_COALESCE": coalesce},
                burst=BURST,
            )
            sides[coalesce] = Side.of(coalesce, await run_load(stack, load, PARTITIONS))
    return sides["queued"], sides["off"]


def markdown(queued: Side, off: Side, host: dict[str, str | int | None]) -> str:
    """Both settings side by side, with the target and the machine."""
    met = queued.calls_per_message <= TARGET_CALLS_PER_MESSAGE and not (
        queued.lost or queued.duplicated or queued.out_of_order
    )
    lines = [
        f"| bursts of {BURST}, {queued.messages} messages | `off` | `queued` | target (queued) |",
        "| --- | --- | --- | --- |",
        f"| LLM calls per message | {off.calls_per_message:g} | {queued.calls_per_message:g} | "
        f"≤ {TARGET_CALLS_PER_MESSAGE:g}: {'pass' if met else '**miss**'} |",
        f"| replies | {off.replies} | {queued.replies} | |",
        f"| messages without a reply / answered twice | {off.lost} / {off.duplicated} | "
        f"{queued.lost} / {queued.duplicated} | 0 / 0 |",
        f"| replies out of order | {off.out_of_order} | {queued.out_of_order} | 0 |",
        f"| p50 / p99, message to its reply | {off.p50_ms:g} / {off.p99_ms:g} ms | "
        f"{queued.p50_ms:g} / {queued.p99_ms:g} ms | |",
        "",
        f"{AT_ONCE} conversations at a time, each sending {BURST} lines "
        f"{AT_ONCE / RATE_PER_S:.1f} s apart ({RATE_PER_S:g} msg/s); mock LLM at {LATENCY_MS:.0f} ms, "
        f"{IN_FLIGHT} calls in flight, {PARTITIONS} partitions. Machine: {host['cores']} cores, "
        f"{host['cpu_model']}, Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run both settings and write bench/results/coalesce.{json,md}."""
    # The standard load's 2,000 messages, as 400 bursts; its conversations option is not used.
    messages, _, log_dir = standard_load("python -m bench.coalesce", __doc__, "coalesce")
    host = machine()
    queued, off = asyncio.run(run_both(messages, log_dir))
    document = {
        "machine": host,
        "target_calls_per_message": TARGET_CALLS_PER_MESSAGE,
        "queued": asdict(queued),
        "off": asdict(off),
    }
    save("coalesce", document, markdown(queued, off, host))


if __name__ == "__main__":
    main()
