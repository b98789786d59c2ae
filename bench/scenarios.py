"""Bench scenarios: a load run (flat out or paced) and a stalled LLM, each on its own worker and topics."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.checker import Latency, Verdict, check, latency
from bench.stack import Stack, Worker, cpu_snapshot
from bench.traffic import Outgoing, Received, Sender, TextOf, TopicReader, bursts, standard_text, workload

WorkerKind = Literal["enricher", "reference"]
"""Which worker a scenario runs: `enricher worker`, or the reference (bench/reference.py)."""
WORKERS: tuple[WorkerKind, WorkerKind] = ("reference", "enricher")
"""The order of a pair of runs: each run of the worker right after the reference's."""

SETTLE_S = 2.0  # after the last expected reply, to catch late duplicates
READ_BACK_TIMEOUT_S = 60.0
BUFFERED_GAUGE = "enricher_buffered_events"


@dataclass(frozen=True)
class Params:
    """Everything a bench run is parameterised by."""

    messages: int = 3000
    conversations: int = 300
    latency_ms: float = 200.0
    in_flight: int = 64
    partitions: int = 8
    baseline_messages: int = 100
    baseline_conversations: int = 20
    half_load_s: float = 10.0
    stall_messages: int = 20_000
    stall_s: float = 20.0
    sample_every_s: float = 0.5
    repeats: int = 3
    """Runs of the throughput and half-load scenarios; targets take the median run."""
    quick: bool = False

    @property
    def physical_per_s(self) -> float:
        """The physical limit of one worker: in-flight calls over LLM latency."""
        return self.in_flight / (self.latency_ms / 1000)


@dataclass(frozen=True)
class Load:
    """What one load scenario sends."""

    name: str
    messages: int
    conversations: int
    max_in_flight: int
    rate_per_s: float | None = None
    """Paced at this rate; None sends as fast as the producer can."""
    env: dict[str, str] = field(default_factory=dict)
    """Worker settings on top of the scenario's own."""
    mock: dict[str, Any] = field(default_factory=dict)
    """Mock LLM config for this scenario (quotas, faults), put back after it."""
    burst: int = 0
    """With a burst size: `conversations` conversations at a time each send `burst` messages,
    turn by turn, then new ones do (`traffic.bursts`); without, `traffic.workload`."""
    new_wordings: bool = False
    """Every text worded anew (`traffic.workload`)."""
    worker: WorkerKind = "enricher"
    """Which worker runs it; the reference reads the same environment, and ignores what only the
    enricher does (bench/reference.py)."""

    def on(self, worker: WorkerKind) -> Load:
        """The same load, run by `worker`."""
        return dataclasses.replace(self, worker=worker)

    def plan(self, text_of: TextOf = standard_text) -> list[Outgoing]:
        """What this load sends, in order; the customers' texts by `text_of` (`traffic.workload`)."""
        if self.burst:
            return bursts(self.name, self.messages, self.conversations, self.burst)
        return workload(self.name, self.messages, self.conversations, self.new_wordings, text_of)


@dataclass(frozen=True)
class LoadResult:
    """What one load scenario measured."""

    load: Load
    complete: bool
    """Every message got a reply before the timeout."""
    duration_s: float
    """First send to last (first) reply."""
    throughput_per_s: float
    latency: Latency
    verdict: Verdict
    cpu_s: dict[str, float]
    """CPU seconds over first send to last reply: worker, mock_llm, broker, bench."""
    worker_cpu_s_per_1k: float
    worker_peak_rss_mb: float
    mock_max_in_flight: int
    mock_calls: int = 0
    """Chat requests the mock received, refused ones included."""
    mock_refused: int = 0
    """Of those, answered 429 by a quota."""
    replies: int = 0
    """Records on the reply topic (fewer than messages when replies answer several)."""
    extras: ReplyExtras = field(default_factory=lambda: ReplyExtras())
    """What the replies say of the help-center and the tools."""


@dataclass(frozen=True)
class ReplyExtras:
    """The optional reply fields that show what knowledge and tools cost, summed over the replies."""

    with_sources: int = 0
    """Replies whose prompt carried help-center passages."""
    with_tools: int = 0
    """Replies for which the LLM called a tool."""
    tool_calls: int = 0
    tool_ms: int = 0
    """The tool calls' time, summed (each call's `ms`)."""

    @classmethod
    def of(cls, records: Iterable[Received]) -> ReplyExtras:
        """Summed over the reply topic's records."""
        with_sources = with_tools = calls = ms = 0
        for record in records:
            reply = json.loads(record.value)
            with_sources += bool(reply.get("sources"))
            tools = reply.get("tools") or []
            with_tools += bool(tools)
            calls += len(tools)
            ms += sum(int(call.get("ms", 0)) for call in tools)
        return cls(with_sources, with_tools, calls, ms)


@dataclass(frozen=True)
class Sample:
    """The worker's memory and buffer at one moment of the stall."""

    t_s: float
    rss_mb: float
    buffered: float


@dataclass(frozen=True)
class StallResult:
    """The worker while its LLM hangs and a backlog waits in Kafka."""

    messages: int
    buffered_bound: int
    produce_s: float
    samples: list[Sample]
    verdict: Verdict
    worker_peak_rss_mb: float
    worker: WorkerKind = "enricher"


Seed = Callable[[dict[str, str]], Awaitable[None]]
"""Run with a worker's environment once it is ready, before the load is sent and its CPU counted
(e.g. orders put on the orders topic and waited for in Redis)."""


async def run_load(
    stack: Stack,
    load: Load,
    partitions: int,
    text_of: TextOf = standard_text,
    seed: Seed | None = None,
) -> LoadResult:
    """Start a worker, send the load (`text_of` the customers' texts; `seed` the enricher's state
    first), wait for every reply, then check the topics."""
    env = await stack.scenario_settings(
        load.name, partitions, ENRICHER_MAX_IN_FLIGHT=load.max_in_flight, **load.env
    )
    worker = await stack.start_worker(load.name, env, reference=load.worker == "reference")
    settings = worker.settings
    physical_per_s = load.max_in_flight / (stack.latency_ms / 1000)
    timeout_s = 60 + load.messages / (0.5 * min(physical_per_s, load.rate_per_s or physical_per_s))
    baseline_config = await stack.mock.config()
    try:
        if seed is not None and load.worker == "enricher":
            await seed(env)
        await stack.mock.reset()
        await stack.mock.config(**load.mock)
        async with (
            TopicReader(stack.bootstrap, settings.reply_topic) as replies,
            Sender(stack.bootstrap, settings.input_topic) as sender,
        ):
            before = cpu_snapshot(stack.processes(worker))
            await sender.send(load.plan(text_of), load.rate_per_s)
            complete = await replies.wait_for(load.messages, timeout_s)
            after = cpu_snapshot(stack.processes(worker))
            await asyncio.sleep(SETTLE_S)
            peak_rss_mb = worker.proc.peak_rss_mb()
            mock_stats = await stack.mock.stats()
            reply_records = replies.decoded()
            reply_count = len(replies.records)
            extras = ReplyExtras.of(replies.records)
    finally:
        await worker.stop()
        await stack.mock.config(**baseline_config)
    inputs = await read_back(stack, settings.input_topic, load.messages)

    verdict = check(inputs, (keyed for keyed, _ in reply_records))
    replied_at = [(message_id, at) for (_, message_id), at in reply_records]
    first_send = min(sender.sent_at.values())
    last_reply = max((at for message_id, at in replied_at if message_id in sender.sent_at), default=math.inf)
    duration_s = last_reply - first_send
    cpu_s = {name: after[name] - before[name] for name in after}
    return LoadResult(
        load=load,
        complete=complete,
        duration_s=duration_s,
        throughput_per_s=(verdict.inputs - verdict.lost) / duration_s,
        latency=latency(sender.sent_at, replied_at),
        verdict=verdict,
        cpu_s=cpu_s,
        worker_cpu_s_per_1k=cpu_s["worker"] / load.messages * 1000,
        worker_peak_rss_mb=peak_rss_mb,
        mock_max_in_flight=mock_stats["max_in_flight"],
        mock_calls=mock_stats["requests"] + mock_stats["refused"],
        mock_refused=mock_stats["refused"],
        replies=reply_count,
        extras=extras,
    )


@dataclass(frozen=True)
class Paired:
    """The runs of one load scenario by each worker, in the order they ran."""

    enricher: tuple[LoadResult, ...]
    reference: tuple[LoadResult, ...]


async def run_paired(stack: Stack, load: Load, count: int, partitions: int) -> Paired:
    """`count` pairs of runs of `load`, the reference's and then the worker's, each on a fresh
    process and topics: interleaved, so that the machine's drift hits both alike."""
    runs: dict[WorkerKind, list[LoadResult]] = {kind: [] for kind in WORKERS}
    for run in range(1, count + 1):
        for kind in WORKERS:
            print(
                f"bench: {load.name} ({run}/{count}, {kind}): {load.messages} messages, "
                f"{load.max_in_flight} in flight ...",
                flush=True,
            )
            runs[kind].append(await run_load(stack, load.on(kind), partitions))
    return Paired(tuple(runs["enricher"]), tuple(runs["reference"]))


async def run_stall(
    stack: Stack,
    messages: int,
    conversations: int,
    partitions: int,
    duration_s: float,
    every_s: float,
    worker_kind: WorkerKind = "enricher",
) -> StallResult:
    """Hang the mock LLM, produce a backlog and sample the worker's RSS and buffer; SIGKILL it after."""
    env = await stack.scenario_settings("stall", partitions)
    worker = await stack.start_worker("stall", env, reference=worker_kind == "reference")
    settings = worker.settings
    try:
        await stack.mock.reset()
        await stack.mock.config(hang_rate=1.0)
        async with (
            TopicReader(stack.bootstrap, settings.reply_topic) as replies,
            Sender(stack.bootstrap, settings.input_topic) as sender,
        ):
            started = time.monotonic()
            sending = asyncio.create_task(sender.send(workload("stall", messages, conversations)))
            try:
                samples = await sample(worker, started, duration_s, every_s)
            finally:
                await sending
            produce_s = max(sender.sent_at.values()) - started
            peak_rss_mb = worker.proc.peak_rss_mb()
            reply_records = replies.decoded()
    finally:
        await worker.kill()
        await stack.mock.config(hang_rate=0.0)
    inputs = await read_back(stack, settings.input_topic, messages)
    return StallResult(
        messages=messages,
        buffered_bound=settings.max_buffered,
        produce_s=produce_s,
        samples=samples,
        verdict=check(inputs, (keyed for keyed, _ in reply_records)),
        worker_peak_rss_mb=peak_rss_mb,
        worker=worker_kind,
    )


async def sample(worker: Worker, started: float, duration_s: float, every_s: float) -> list[Sample]:
    """RSS and buffered events of `worker` every `every_s` until `duration_s` after `started`."""
    samples = []
    tick = started
    while tick <= started + duration_s:
        buffered = await worker.gauge(BUFFERED_GAUGE)
        samples.append(Sample(round(time.monotonic() - started, 2), worker.proc.rss_mb(), buffered))
        tick += every_s
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
    return samples


async def read_back(stack: Stack, topic: str, count: int) -> list[tuple[str, str]]:
    """The input topic as the worker saw it: (conversation_id, message_id) in partition order."""
    async with TopicReader(stack.bootstrap, topic) as reader:
        if not await reader.wait_for(count, READ_BACK_TIMEOUT_S):
            raise RuntimeError(f"{topic}: read {len(reader.records)} of {count} records produced")
        return [keyed for keyed, _ in reader.decoded()]
