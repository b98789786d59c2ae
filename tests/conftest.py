"""Session services on free ports (broker, Redis, mock LLM) and real worker processes per test.

Each test gets its own app id, topics and Redis database (`enricher_env`), so tests never see
each other's records. Under pytest-xdist (`make test`), each process starts services of its own
on free ports, so processes share nothing. Helpers for topics and worker processes live in
`tests/helpers/`.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from devstack.broker import EmbeddedBroker
from devstack.mock_llm.admin import MockAdmin
from devstack.mock_llm.server import serve
from devstack.mock_llm.state import MockConfig
from devstack.processes import ManagedProcess, free_port
from devstack.redis_server import EmbeddedRedis
from tests.helpers.envs import on_broker, service_env_for
from tests.helpers.tls import Pki, make_pki
from tests.helpers.workers import REPO, Worker, WorkerFactory, running_workers

LEFT_TASKS_S = 5.0


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Append the workers' log tails to the report of a failed test."""
    report = yield
    if report.failed and call.when != "teardown":
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, WorkerFactory):
                report.sections.append(("worker logs", value.log_tails()))
            elif isinstance(value, Worker):
                report.sections.append((f"{value.process.name} log", value.process.log_tail(60)))
    return report


@pytest.fixture(scope="session", autouse=True)
async def _tasks_left_at_the_end() -> AsyncIterator[None]:
    """Cancel the tasks still pending when the session's services have stopped, and fail with the
    stacks of those that do not end within LEFT_TASKS_S: the session's event loop would otherwise
    wait for them as it closes, with no bound but the last test's timeout, and say nothing of them."""
    yield
    left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in left:
        task.cancel()
    if not left:
        return
    _, pending = await asyncio.wait(left, timeout=LEFT_TASKS_S)
    if pending:
        stacks = io.StringIO()
        for task in pending:
            print(f"{task!r}", file=stacks)
            task.print_stack(file=stacks)
        pytest.fail(
            f"{len(pending)} task(s) did not end within {LEFT_TASKS_S} s of being cancelled:\n"
            + stacks.getvalue()
        )


@pytest.fixture(scope="session")
async def kafka(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The embedded Tansu broker for the session; yields its bootstrap servers."""
    log_path = tmp_path_factory.mktemp("broker") / "broker.log"
    async with EmbeddedBroker(log_path=log_path) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with server and client certificates for 127.0.0.1 (PEM files)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The embedded valkey server for the session (never the machine's 6379); yields its URL."""
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="session")
async def mock_llm(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The mock LLM as a child process for the session; yields its base URL (`.../v1`)."""
    port = free_port()
    argv = [sys.executable, "-m", "app.main", "mock-llm", "--port", str(port), "--latency-ms", "0"]
    log_path = tmp_path_factory.mktemp("mock-llm") / "mock-llm.log"
    with ManagedProcess("mock-llm", argv, log_path=log_path, cwd=REPO) as process:
        base_url = f"http://127.0.0.1:{port}/v1"
        await process.wait_http_ok(f"{base_url}/models", timeout_s=30.0)
        yield base_url


@pytest.fixture
async def mock_url() -> AsyncIterator[str]:
    """A mock LLM in this process for this test alone, without latency; yields its base URL."""
    async with serve(MockConfig(latency_ms=0)) as base_url:
        yield base_url


@pytest.fixture(scope="session")
async def _mock_baseline(mock_llm: str) -> dict[str, Any]:
    async with MockAdmin(mock_llm) as admin:
        return await admin.config()


@pytest.fixture
async def mock_admin(mock_llm: str, _mock_baseline: dict[str, Any]) -> AsyncIterator[MockAdmin]:
    """A MockAdmin on a mock that is reset, and put back to its session config, around the test."""
    async with MockAdmin(mock_llm) as admin:
        await admin.reset()
        yield admin
        await admin.reset()
        await admin.config(**_mock_baseline)


@pytest.fixture
async def service_env(request: pytest.FixtureRequest, redis_url: str, mock_llm: str) -> dict[str, str]:
    """This test's settings without a broker: own app id and topic names, empty Redis database."""
    return await service_env_for(request.node.name, redis_url, mock_llm)


@pytest.fixture
def service_settings(service_env: dict[str, str]) -> Settings:
    """`service_env` as Settings: for tests of Redis and the LLM, which start no broker."""
    return Settings.model_validate(service_env)


@pytest.fixture
async def enricher_env(service_env: dict[str, str], kafka: str) -> dict[str, str]:
    """The worker environment of this test: `service_env` on the broker, its topics created."""
    return await on_broker(service_env, kafka)


@pytest.fixture
def enricher_settings(enricher_env: dict[str, str]) -> Settings:
    """`enricher_env` as Settings: topic names, Redis URL and all of this test's configuration."""
    return Settings.model_validate(enricher_env)


@pytest.fixture
def worker_factory(enricher_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerFactory]:
    """Starts workers for this test, stops them all after it; a failure report shows their logs."""
    with running_workers(enricher_env, tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module")
async def shared_env(
    request: pytest.FixtureRequest, redis_url: str, mock_llm: str, kafka: str
) -> dict[str, str]:
    """`enricher_env` for a whole module: its tests share the topics, the consumer group and the
    Redis database, so each uses conversation, message and customer ids of its own."""
    return await on_broker(await service_env_for(request.node.name, redis_url, mock_llm), kafka)


@pytest.fixture(scope="module")
async def shared_worker(
    shared_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Worker]:
    """One ready worker with the default settings on `shared_env`, for the module's tests that
    need nothing else of it; stopped after the last. A start costs a few seconds: starting,
    joining the group, loading the embedded models. Tests on it must not stop it."""
    with running_workers(shared_env, tmp_path_factory.mktemp("shared-worker")) as factory:
        yield await factory()
