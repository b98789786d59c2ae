"""`make profile`: where the worker's CPU goes on the standard load, sampled by py-spy.

One worker, every feature at its defaults, answers the standard load (2,000 messages over 200
conversations, 8 partitions, the mock LLM at 200 ms, 64 in flight) while two py-spy samplers
watch it from outside: one draws the flame graph (`bench/results/profile.svg`), the other keeps
the collapsed stacks, from which `bench/results/profile.md` tables the functions that take the
most samples, on their own (self) and with what they call (total).

`python -m bench.profile [--messages N] [--conversations M] [--env NAME=VALUE ...]`
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.report import RESULTS_DIR, machine
from bench.stack import Stack
from bench.traffic import Sender, TopicReader, workload

LATENCY_MS = 200.0
IN_FLIGHT = 64
PARTITIONS = 8
RATE_HZ = 200  # samples a second, per sampler
TOP = 25
REPLY_TIMEOUT_S = 180.0
PY_SPY_STOP_S = 20.0


@dataclass(frozen=True)
class Frame:
    """A function as py-spy names it: `name (file:line)`, without the line."""

    name: str

    @classmethod
    def of(cls, raw: str) -> Frame:
        """`handle (app/pipeline.py:120)` → `handle (app/pipeline.py)`."""
        function, _, where = raw.partition(" (")
        path = where.rstrip(")").rsplit(":", 1)[0]
        for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
            path = path.rpartition(marker)[2] or path
        return cls(f"{function} ({path})" if path else function)


# The functions of a file that holds more than one feature's, by their names' prefixes. In
# app/signals/models.py, what reads a message and counts it (the models it calls count through
# it; their loading and the help-center's WordLlama vectors do not); in app/signals/pii.py,
# personal data found, and masked and restored.
SIGNALS_READ = (
    "Signal",
    "IntentMatch",
    "scored_rows",
    "check_intents",
    "count",
    "_counter",
    "signal_labels",
    "_tone",
)
PII_FOUND = (
    "Span",
    "find",
    "kinds",
    "phone_region",
    "_candidates",
    "_span",
    "_is_phone",
    "national_phone_valid",
    "nir_valid",
    "tax_id_valid",
    "ssn_valid",
    "nino_valid",
    "luhn_valid",
    "iban_valid",
    "_digits",
)
PII_MASKED = (
    "Masked",
    "StreamRestorer",
    "mask",
    "_replaced",
    "prompt_texts",
    "_leaves",
    "wording",
    "_identity",
    "_kind_of",
    "_next_placeholder",
    "_with_text",
)
# What each feature on a message's path runs, as (file, function prefix) pairs: a sample is the
# feature's when any frame of its stack matches one (an empty prefix takes the whole file).
FEATURES: dict[str, tuple[tuple[str, str], ...]] = {
    "embedded models (language, sentiment, intent, personal data found)": (
        *(("app/signals/models.py", prefix) for prefix in SIGNALS_READ),
        *(("app/signals/pii.py", prefix) for prefix in PII_FOUND),
    ),
    "personal data masked and restored": (
        *(("app/signals/pii.py", prefix) for prefix in PII_MASKED),
        ("app/pipeline.py", "RestoringSink"),
    ),
    "output guard": (("app/guard.py", ""),),
    "trace context": (("app/observability/tracing.py", ""),),
    "history (turns read, trimmed, written)": (
        ("app/context.py", "_turns_of"),
        ("app/context.py", "ContextStore._queue_turns"),
        ("app/pipeline.py", "turns_of"),
        ("app/pipeline.py", "fit_history"),
    ),
    "streamed chunks": (("app/kafka/outbox.py", "ChunkPublisher"),),
    "published marks": (("app/context.py", "ContextStore.mark_published"),),
    "adaptive limits and deadlines": (
        ("app/llm/pacing.py", ""),
        ("app/llm/client.py", "FirstTokenDeadline"),
        ("app/llm/client.py", "_nothing"),
        ("app/llm/health.py", "ModelHealth"),
    ),
    "prompt templates (select, render)": (("app/prompts/", ""),),
    "help-center passages (search, fitted to the budget)": (("app/knowledge/", ""),),
    # Off in the standard load (ENRICHER_TOOL_MAX_STEPS=0, one LLM call per message as the
    # reference makes); bench.features measures the load with tools on. The loop's entry
    # (complete_with_tools) and its delta relay (_Round) wrap every call and its stream, so they
    # would count the LLM call and the chunks as the tools': only what runs for a tool counts.
    "tools (calls run, results told, lookups)": (
        ("app/llm/tool_loop.py", "_run"),
        ("app/llm/tool_loop.py", "_asking"),
        ("app/llm/tool_loop.py", "_sum"),
        ("app/llm/tool_calls.py", ""),
        ("app/tools.py", ""),
    ),
    "metrics": (("prometheus_client/", ""),),
}
# The job itself, which the reference worker does too: shown for scale.
CORE: dict[str, tuple[tuple[str, str], ...]] = {
    "LLM call (request, stream read)": (("app/llm/client.py", "LLMClient._stream"),),
    "Redis (lookup, record)": (
        ("app/context.py", "ContextStore.lookup"),
        ("app/context.py", "ContextStore.record"),
    ),
    "Kafka in (faust consumer, stream, events)": (
        ("faust/transport/consumer.py", ""),
        ("faust/streams.py", ""),
        ("mode/threads.py", ""),
        ("aiokafka/consumer/", ""),
    ),
    "Kafka out (replies, chunks)": (("faust/topics.py", ""), ("aiokafka/producer/", "")),
}


@dataclass(frozen=True)
class Row:
    """One function's share of the samples."""

    frame: Frame
    self_share: float
    total_share: float


def stacks(collapsed: Iterable[str]) -> Iterator[tuple[list[Frame], int]]:
    """Each stack of collapsed stacks (`frame;frame;... count` per line, root first), with its count."""
    for line in collapsed:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if stack and count_text.isdigit():
            yield [Frame.of(raw) for raw in stack.split(";")], int(count_text)


def top_functions(collapsed: Iterable[str], top: int = TOP) -> tuple[int, list[Row], list[Row]]:
    """The samples counted, and the `top` functions by self and by total share, from collapsed
    stacks (`frame;frame;... count` per line, root first)."""
    own: collections.Counter[Frame] = collections.Counter()
    anywhere: collections.Counter[Frame] = collections.Counter()
    samples = 0
    for frames, count in stacks(collapsed):
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    if not samples:
        return 0, [], []

    def rows(counter: collections.Counter[Frame]) -> list[Row]:
        return [
            Row(frame, own[frame] / samples, anywhere[frame] / samples)
            for frame, _ in counter.most_common(top)
        ]

    return samples, rows(own), rows(anywhere)


def shares(collapsed: Iterable[str], groups: dict[str, tuple[tuple[str, str], ...]]) -> dict[str, float]:
    """Each group's share of the samples: those with a frame of the group anywhere in the stack."""
    counts = dict.fromkeys(groups, 0)
    samples = 0
    for frames, count in stacks(collapsed):
        samples += count
        names = {frame.name for frame in frames}
        for name, matchers in groups.items():
            if any(
                f"({path}" in frame and frame.startswith(prefix)
                for frame in names
                for path, prefix in matchers
            ):
                counts[name] += count
    return {name: count / samples if samples else 0.0 for name, count in counts.items()}


def feature_table(features: dict[str, float], core: dict[str, float], cpu_s_per_1k: float) -> str:
    """Each feature's share of the samples, as CPU seconds per 1,000 messages."""
    lines = [
        "### What each feature costs",
        "",
        "Its share of the samples (a stack with any of its frames) times the worker's CPU per 1,000 "
        "messages; the job's own parts below, for scale. Shares overlap where one part calls another "
        "(restoring personal data sends the chunks).",
        "",
        "| part | share % | CPU s per 1,000 messages |",
        "| --- | --- | --- |",
    ]
    for title, rows in (("", features), ("the job: ", core)):
        lines += [
            f"| {title}{name} | {share * 100:.1f} | {share * cpu_s_per_1k:.2f} |"
            for name, share in rows.items()
        ]
    return "\n".join(lines) + "\n"


def markdown(samples: int, by_self: list[Row], by_total: list[Row], context: str) -> str:
    """The two tables of the profile, with how it was taken."""
    lines = [context, "", f"{samples} samples of the worker.", ""]
    for title, rows in (("self", by_self), ("total (with what it calls)", by_total)):
        lines += [
            f"### Top {len(rows)} by {title}",
            "",
            "| function | self % | total % |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| `{row.frame.name}` | {row.self_share * 100:.1f} | {row.total_share * 100:.1f} |"
            for row in rows
        ]
        lines.append("")
    return "\n".join(lines)


def stem(reference: bool) -> str:
    """The name of the result files, without suffix."""
    return "profile-reference" if reference else "profile"


def py_spy() -> str:
    """The py-spy of this venv (a dev dependency)."""
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: `make install` puts it into .venv")
    return found


def sampler(pid: int, output: Path, fmt: str) -> subprocess.Popen[bytes]:
    """A py-spy that samples `pid` until it gets SIGINT, without pausing it; only the thread that
    holds the GIL, so that an event loop waiting in its poll is not taken for work."""
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking", "--gil"]
    argv += ["--format", fmt, "--output", str(output)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(samplers: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGINT each sampler (so it writes its file) and wait for it."""
    for process in samplers:
        process.send_signal(signal.SIGINT)
    for process in samplers:
        _, errors = process.communicate(timeout=PY_SPY_STOP_S)
        if process.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")


async def profile(
    messages: int, conversations: int, env: dict[str, str], out: Path, *, reference: bool = False
) -> str:
    """Run the load on a fresh worker (or the reference) under the samplers; the Markdown of the result."""
    log_dir = Path(tempfile.mkdtemp(prefix="enricher-profile-"))
    print(f"profile: logs in {log_dir}", flush=True)
    collapsed = log_dir / f"{stem(reference)}.txt"
    async with Stack(log_dir, LATENCY_MS) as stack:
        settings_env = await stack.scenario_settings(
            "profile", PARTITIONS, ENRICHER_MAX_IN_FLIGHT=IN_FLIGHT, **env
        )
        worker = await stack.start_worker("profile", settings_env, reference=reference)
        try:
            async with (
                TopicReader(stack.bootstrap, worker.settings.reply_topic) as replies,
                Sender(stack.bootstrap, worker.settings.input_topic) as sender,
            ):
                samplers = [
                    sampler(worker.proc.pid, out / f"{stem(reference)}.svg", "flamegraph"),
                    sampler(worker.proc.pid, collapsed, "raw"),
                ]
                cpu_before = worker.proc.cpu_s()
                try:
                    print(f"profile: {messages} messages ...", flush=True)
                    await sender.send(workload("profile", messages, conversations))
                    if not await replies.wait_for(messages, REPLY_TIMEOUT_S):
                        raise RuntimeError(f"only {replies.covered} of {messages} messages answered")
                    cpu_s = worker.proc.cpu_s() - cpu_before
                finally:
                    await asyncio.to_thread(stop, samplers)
        finally:
            await worker.stop()
    host = machine()
    settings = ", ".join(f"{name}={value}" for name, value in env.items()) or "the rest at their defaults"
    who = "The reference worker's (bench/reference.py)" if reference else "Worker"
    context = (
        f"{who} profile on the standard load: {messages} messages over {conversations} conversations, "
        f"{PARTITIONS} partitions, mock LLM at {LATENCY_MS:.0f} ms, {IN_FLIGHT} in flight, "
        f"ENRICHER_COALESCE=off (a call per message), {settings}; "
        f"worker CPU {cpu_s / messages * 1000:.2f} s per 1,000 messages (py-spy sampling, "
        f"non-blocking, included). Flame graph: `{stem(reference)}.svg`. Machine: {host['cores']} cores, "
        f"{host['cpu_model']}, Python {host['python']}, {host['date']}."
    )
    stacks = collapsed.read_text().splitlines()
    samples, by_self, by_total = top_functions(stacks)
    cpu_s_per_1k = cpu_s / messages * 1000
    costs = feature_table(shares(stacks, FEATURES), shares(stacks, CORE), cpu_s_per_1k)
    return markdown(samples, by_self, by_total, context) + "\n" + costs


def main(argv: list[str] | None = None) -> None:
    """Profile the worker (or the reference) and write bench/results/profile[-reference].{svg,md}."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--env", action="append", default=[], help="a worker setting, NAME=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--reference", action="store_true", help="profile the reference worker instead")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    args.out.mkdir(parents=True, exist_ok=True)
    text = asyncio.run(profile(args.messages, args.conversations, env, args.out, reference=args.reference))
    (args.out / f"{stem(args.reference)}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
