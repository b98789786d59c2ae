"""Real `enricher worker` processes for tests: start on a test's environment, wait, stop, show logs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import Settings
from devstack.processes import ManagedProcess, free_port, isolated_worker

REPO = Path(__file__).resolve().parents[2]
PROMPTS = REPO / "prompts"
READY_TIMEOUT_S = 60.0


@dataclass
class Worker:
    """One `enricher worker` child process."""

    process: ManagedProcess
    env: dict[str, str]
    web_url: str

    @property
    def settings(self) -> Settings:
        """The worker's configuration."""
        return Settings.model_validate(self.env)

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGINT, then SIGTERM, then SIGKILL; the exit code."""
        return self.process.stop(grace_s)

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        self.process.kill()


@dataclass
class WorkerFactory:
    """`await worker_factory()` starts a worker on this test's environment and waits for /readyz."""

    env: dict[str, str]
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)

    async def __call__(self, overrides: Mapping[str, str] | None = None, *, ready: bool = True) -> Worker:
        """Start one more worker with `overrides` on top of `enricher_env` (same group, topics)."""
        env = self.env | dict(overrides or {})
        web_port = int(env.setdefault("ENRICHER_WEB_PORT", str(free_port())))
        process = isolated_worker(f"worker-{len(self.workers) + 1}", env, self.log_dir)
        worker = Worker(process.start(), env, f"http://127.0.0.1:{web_port}")
        self.workers.append(worker)
        if ready:
            await self.wait_ready(worker)
        return worker

    async def wait_ready(self, worker: Worker, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait for the worker's /readyz; the failure carries its log's tail."""
        try:
            await worker.process.wait_http_ok(f"{worker.web_url}/readyz", timeout_s)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{worker.process.log_tail()}") from None

    def stop_all(self) -> None:
        """Stop every worker still running, all at once: one stopped after another would make
        each leave, and the next one sit through a rebalance before it is asked to stop."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.workers))) as pool:
            list(pool.map(Worker.stop, self.workers))

    def log_tails(self) -> str:
        """The end of each worker's log."""
        return "\n".join(f"--- {w.process.name} log ---\n{w.process.log_tail(60)}" for w in self.workers)


@contextmanager
def running_workers(env: dict[str, str], log_dir: Path) -> Iterator[WorkerFactory]:
    """A WorkerFactory on `env` whose workers are all stopped when the block ends."""
    factory = WorkerFactory(env, log_dir)
    try:
        yield factory
    finally:
        factory.stop_all()
