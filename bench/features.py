"""`python -m bench.features`: the standard load with the help-center and tools on, beside the same
run's reference and the worker with both off.

The standard load's size (2,000 messages over 200 conversations, 8 partitions, the mock LLM at
200 ms, 64 in flight, one reply per message), with a support desk's mix of texts: a third ask
where one of the customer's orders is (which the shipped `order_status` tool looks up, from orders
put on the orders topic before the load), a third ask the help-center's labelled questions, a
third are the standard load's text. Three sides, interleaved over the runs so the machine's drift
hits them alike:

- the reference (bench/reference.py): one LLM call per message, no help-center, no tools;
- the worker with `ENRICHER_KNOWLEDGE_DIR` empty and `ENRICHER_TOOL_MAX_STEPS=0`;
- the worker with the shipped help-center and tools.

Per side: messages per second, worker CPU per 1,000 replies and its ratio to the reference's, LLM
calls per message, replies carrying passages and tool calls, and the tool calls' time. Writes
bench/results/features.md and .json.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import redis.asyncio as aioredis
import yaml
from aiokafka import AIOKafkaProducer

from app.polling import NotYet, poll
from app.redis_keys import orders_key
from bench.report import machine, median_run, ratio, save, standard_load
from bench.scenarios import Load, LoadResult, WorkerKind, run_load
from bench.stack import REPO, Stack
from bench.traffic import standard_text
from devstack.sender import order_now

LATENCY_MS = 200.0
IN_FLIGHT = 64
PARTITIONS = 8
RUNS = 3
CUSTOMERS = 50  # bench.traffic's customers: cust-0 .. cust-49
SEED_TIMEOUT_S = 60.0
QUESTIONS = REPO / "bench" / "data" / "knowledge_questions.yaml"
EMPTY_KNOWLEDGE = Path(tempfile.mkdtemp(prefix="enricher-bench-no-articles-"))

Side = tuple[WorkerKind, str]
SIDES: tuple[Side, ...] = (("reference", "reference"), ("enricher", "off"), ("enricher", "on"))
SETTINGS: dict[str, dict[str, str]] = {
    "reference": {},
    "off": {"ENRICHER_KNOWLEDGE_DIR": str(EMPTY_KNOWLEDGE), "ENRICHER_TOOL_MAX_STEPS": "0"},
    "on": {"ENRICHER_KNOWLEDGE_DIR": str(REPO / "knowledge"), "ENRICHER_TOOL_MAX_STEPS": "3"},
}


def order_id(customer: int) -> str:
    """The one order each bench customer has."""
    return f"LK-{5000 + customer}"


def support_mix(questions: list[str]) -> Callable[[int, int], str]:
    """Texts by (conversation, turn): an order's whereabouts, a help-center question, the standard text."""

    def text_of(conversation: int, turn: int) -> str:
        match (conversation + turn) % 3:
            case 0:
                return f"Hi, where is my order {order_id(conversation % CUSTOMERS)}? Turn {turn}."
            case 1:
                return questions[(conversation * 7 + turn) % len(questions)]
            case _:
                return standard_text(conversation, turn)

    return text_of


async def seed_orders(env: dict[str, str]) -> None:
    """Each bench customer's order on the orders topic, waited for in Redis, where the worker keeps it."""
    producer = AIOKafkaProducer(bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], acks="all")
    await producer.start()
    try:
        for customer in range(CUSTOMERS):
            order = order_now(order_id(customer), f"cust-{customer}", "shipped", ["Trail shoes"], "DHL", None)
            value = json.dumps(order.as_record()).encode()
            await producer.send_and_wait(env["ENRICHER_ORDERS_TOPIC"], value, key=order.customer_id.encode())
    finally:
        await producer.stop()
    async with aioredis.from_url(env["REDIS_URL"]) as redis:

        async def all_kept() -> None:
            kept = sum([await redis.exists(orders_key(f"cust-{c}")) for c in range(CUSTOMERS)])
            if kept < CUSTOMERS:
                raise NotYet(f"{kept} of the {CUSTOMERS} bench customers' orders in Redis")

        await poll(all_kept, SEED_TIMEOUT_S, 0.2)


@dataclass(frozen=True)
class Figures:
    """One side's median run (by worker CPU) and what its replies say."""

    side: str
    runs: int
    messages_per_s: float
    worker_cpu_s_per_1k: float
    llm_calls_per_message: float
    replies: int
    with_sources: int
    with_tools: int
    tool_calls: int
    mean_tool_ms: float
    lost: int
    duplicated: int
    out_of_order: int
    cpu_runs: tuple[float, ...]

    @classmethod
    def of(cls, side: str, runs: list[LoadResult]) -> Figures:
        """The median run by worker CPU per 1,000 replies, and the spread of all runs."""
        run = median_run(runs, lambda r: r.worker_cpu_s_per_1k)
        extras = run.extras
        return cls(
            side=side,
            runs=len(runs),
            messages_per_s=round(run.throughput_per_s, 1),
            worker_cpu_s_per_1k=round(run.worker_cpu_s_per_1k, 2),
            llm_calls_per_message=round(run.mock_calls / run.load.messages, 2),
            replies=run.replies,
            with_sources=extras.with_sources,
            with_tools=extras.with_tools,
            tool_calls=extras.tool_calls,
            mean_tool_ms=round(extras.tool_ms / extras.tool_calls, 1) if extras.tool_calls else 0.0,
            lost=sum(r.verdict.lost for r in runs),
            duplicated=sum(r.verdict.duplicated for r in runs),
            out_of_order=sum(r.verdict.out_of_order for r in runs),
            cpu_runs=tuple(round(r.worker_cpu_s_per_1k, 2) for r in runs),
        )


async def run_sides(messages: int, conversations: int, log_dir: Path) -> dict[str, Figures]:
    """RUNS rounds of the three sides on one stack."""
    questions = [q["q"] for q in yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))["questions"]]
    text_of = support_mix(questions)
    results: dict[str, list[LoadResult]] = {name: [] for _, name in SIDES}
    async with Stack(log_dir, LATENCY_MS) as stack:
        for round_ in range(1, RUNS + 1):
            for kind, name in SIDES:
                print(f"bench: features {name} ({round_}/{RUNS}): {messages} messages ...", flush=True)
                load = Load(f"features-{name}", messages, conversations, IN_FLIGHT, env=SETTINGS[name])
                results[name].append(await run_load(stack, load.on(kind), PARTITIONS, text_of, seed_orders))
    return {name: Figures.of(name, runs) for name, runs in results.items()}


def markdown(figures: dict[str, Figures], messages: int, host: dict[str, str | int | None]) -> str:
    """The three sides in one table, ratios to the reference, and the machine."""
    reference = figures["reference"]
    label = {
        "reference": "the reference",
        "off": "worker, help-center and tools off",
        "on": "worker, help-center and tools on",
    }
    lines = [
        "| side | msg/s | worker CPU s per 1k replies (runs) | x ref | LLM calls per message "
        "| replies with passages | replies with tool calls | tool calls, mean ms | lost / dup / order |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in figures.items():
        lines.append(
            f"| {label[name]} | {f.messages_per_s:g} | {f.worker_cpu_s_per_1k:g} "
            f"({', '.join(f'{c:g}' for c in f.cpu_runs)}) | "
            f"{ratio(f.worker_cpu_s_per_1k, reference.worker_cpu_s_per_1k):.2f} | "
            f"{f.llm_calls_per_message:g} | {f.with_sources} of {f.replies} | {f.with_tools} | "
            f"{f.tool_calls}, {f.mean_tool_ms:g} | {f.lost} / {f.duplicated} / {f.out_of_order} |"
        )
    on, off = figures["on"], figures["off"]
    added = on.worker_cpu_s_per_1k - off.worker_cpu_s_per_1k
    lines += [
        "",
        f"The help-center and tools add {added:+.2f} s of worker CPU per 1,000 replies in this run "
        f"(median of {RUNS} runs each), with {on.llm_calls_per_message:g} LLM calls per message against "
        f"{off.llm_calls_per_message:g}: a tool call costs a second call to the LLM. "
        f"{messages} messages a side and run, a third asking about an order, a third the help-center's "
        f"labelled questions, a third the standard text; mock LLM at {LATENCY_MS:.0f} ms, {IN_FLIGHT} "
        f"in flight, {PARTITIONS} partitions. Machine: {host['cores']} cores, {host['cpu_model']}, "
        f"Python {host['python']}, {host['date']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the three sides and write bench/results/features.{json,md}."""
    messages, conversations, log_dir = standard_load("python -m bench.features", __doc__, "features")
    host = machine()
    figures = asyncio.run(run_sides(messages, conversations, log_dir))
    document = {"machine": host, "messages": messages, "sides": {n: asdict(f) for n, f in figures.items()}}
    save("features", document, markdown(figures, messages, host))


if __name__ == "__main__":
    main()
