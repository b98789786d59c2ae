"""The services a bench run needs: one embedded stack, the mock LLM's admin API, a worker per scenario."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import redis.asyncio as aioredis

from app.kafka.topics import TopicNames
from app.settings import Settings
from devstack.broker import EmbeddedBroker, create_topics
from devstack.mock_llm.admin import MockAdmin
from devstack.processes import CONTRACT_PREFIXES, ManagedProcess, free_port, isolated_worker
from devstack.redis_server import EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 90.0
HTTP_TIMEOUT_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Proc:
    """CPU time and memory of one running process, read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        """User plus system CPU seconds used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14, 15

    def status_mb(self, field: str) -> float:
        """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM) in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) / 1024
        raise KeyError(f"{field} not in /proc/{self.pid}/status")

    def rss_mb(self) -> float:
        """Resident set size now."""
        return self.status_mb("VmRSS")

    def peak_rss_mb(self) -> float:
        """The highest resident set size so far (VmHWM)."""
        return self.status_mb("VmHWM")

    def cmdline(self) -> list[str]:
        """The process's argv."""
        return Path(f"/proc/{self.pid}/cmdline").read_bytes().decode().split("\0")[:-1]


@dataclass
class Worker:
    """One worker child of a scenario: `enricher worker`, or the reference (bench/reference.py)."""

    process: ManagedProcess
    settings: Settings
    proc: Proc

    @property
    def web_url(self) -> str:
        """Base URL of /readyz and /metrics."""
        return f"http://127.0.0.1:{self.settings.web_port}"

    async def gauge(self, name: str) -> float:
        """The value of an unlabelled gauge on the worker's /metrics page."""
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            response = await client.get(f"{self.web_url}/metrics")
        response.raise_for_status()
        for line in response.text.splitlines():
            metric, _, value = line.partition(" ")
            if metric == name:
                return float(value)
        raise KeyError(f"{name} not on /metrics")

    async def stop(self) -> None:
        """SIGINT, so the worker drains and exits as in production."""
        await asyncio.to_thread(self.process.stop, 15.0)

    async def kill(self) -> None:
        """SIGKILL, as a crash."""
        await asyncio.to_thread(self.process.kill)


class Stack:
    """Broker, Redis and the mock LLM at a fixed latency, started once; `async with Stack(...)`."""

    def __init__(self, log_dir: Path, latency_ms: float) -> None:
        self.log_dir = log_dir
        self.latency_ms = latency_ms
        self.broker = EmbeddedBroker(log_path=log_dir / "broker.log")
        self.redis = EmbeddedRedis()
        self._mock_port = free_port()
        latency = ("--latency-ms", str(latency_ms), "--jitter-ms", "0")
        self.mock_process = ManagedProcess(
            "mock-llm",
            [sys.executable, "-m", "app.main", "mock-llm", "--port", str(self._mock_port), *latency],
            log_path=log_dir / "mock-llm.log",
            cwd=REPO,
        )
        self.mock = MockAdmin(f"http://127.0.0.1:{self._mock_port}")
        self._exit = contextlib.AsyncExitStack()
        # Redis has 16 databases; a bench of more scenarios takes them round again, emptied first.
        self._databases = itertools.cycle(range(1, 16))

    @property
    def bootstrap(self) -> str:
        """KAFKA_BOOTSTRAP_SERVERS of the embedded broker."""
        return self.broker.bootstrap_servers

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.broker)
            stack.enter_context(self.redis)
            stack.enter_context(self.mock_process)
            stack.push_async_callback(self.mock.aclose)
            await self.mock_process.wait_http_ok(f"http://127.0.0.1:{self._mock_port}/v1/models", 30.0)
            self._exit = stack.pop_all()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._exit.aclose()

    async def scenario_settings(self, name: str, partitions: int, **overrides: Any) -> dict[str, str]:
        """A fresh worker environment for one scenario (app id, topics, Redis db); creates its topics."""
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        topics = TopicNames.prefixed(prefix)
        redis_url = self.redis.url.rsplit("/", 1)[0] + f"/{next(self._databases)}"
        async with aioredis.from_url(redis_url) as redis:
            await redis.flushdb()
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "REDIS_URL": redis_url,
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self._mock_port}/v1",
            "ENRICHER_APP_ID": prefix,
            **topics.env(),
            "ENRICHER_PROMPTS_DIR": str(REPO / "prompts"),
            "ENRICHER_INPUT_PARTITIONS": str(partitions),
            "ENRICHER_WEB_PORT": str(free_port()),
            # One reply per message, as the figures of the other benches were measured;
            # bench.coalesce compares this with answering queued messages together.
            "ENRICHER_COALESCE": "off",
            "ENRICHER_KNOWLEDGE_DIR": str(REPO / "knowledge"),
            # One LLM call per message, as the reference makes: the standard text names an order,
            # which the shipped order_status tool would look up in a second call. bench.features
            # measures the load with tools on beside this.
            "ENRICHER_TOOL_MAX_STEPS": "0",
        } | {key: str(value) for key, value in overrides.items()}
        await create_topics(self.bootstrap, topics.partitions(partitions))
        return env

    def processes(self, worker: Worker) -> dict[str, Proc]:
        """The processes whose CPU a scenario accounts for: the worker and the stack around it."""
        return {
            "worker": worker.proc,
            "mock_llm": Proc(self.mock_process.pid),
            "broker": Proc(self.broker.process.pid),
        }

    async def start_worker(
        self, name: str, env: dict[str, str], *, wait_ready: bool = True, reference: bool = False
    ) -> Worker:
        """Start a worker on `env` and (unless told not to) wait until /readyz says ready;
        with `reference`, the reference worker (bench/reference.py) on the same environment."""
        if reference:
            process = reference_worker(f"reference-{name}", env, self.log_dir)
        else:
            process = isolated_worker(f"worker-{name}", env, self.log_dir)
        worker = Worker(process.start(), Settings.model_validate(env), Proc(process.pid))
        if not wait_ready:
            return worker
        try:
            await process.wait_http_ok(f"{worker.web_url}/readyz", READY_TIMEOUT_S)
            # ManagedProcess execs the interpreter directly: its pid is the worker, not a wrapper.
            if worker.proc.cmdline()[1:] != process.argv[1:]:
                raise RuntimeError(f"pid {process.pid} is not the worker: {worker.proc.cmdline()}")
        except BaseException:
            await worker.kill()
            raise
        return worker


def reference_worker(name: str, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """`python -m bench.reference` configured only by `env`, as `isolated_worker` starts the worker."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(CONTRACT_PREFIXES)}
    return ManagedProcess(
        name,
        [sys.executable, "-m", "bench.reference"],
        env=inherited | env | {"PYTHONUNBUFFERED": "1"},
        log_path=log_dir / f"{name}.log",
        cwd=REPO,  # for `bench` to import; it reads no .env file
    )


def cpu_snapshot(procs: dict[str, Proc]) -> dict[str, float]:
    """CPU seconds used so far by each named process, plus `bench` for this process itself."""
    own = os.times()
    return {name: proc.cpu_s() for name, proc in procs.items()} | {"bench": own.user + own.system}
