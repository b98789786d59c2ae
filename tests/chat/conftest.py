"""A real `enricher chat` process on this test's broker topics, Redis database and a port of its own,
or one shared by a module's tests; and a real browser to open its pages in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from devstack.broker import create_topics
from devstack.processes import free_port
from tests.helpers.browser import CHROMIUM_ARGS
from tests.helpers.credentials import doors_env, write_tokens_file
from tests.helpers.debian import debian_command
from tests.helpers.gateway import Gateway
from tests.helpers.workers import Worker, running_workers


async def _for_chat(env: dict[str, str], kafka: str, tokens_file: Path) -> dict[str, str]:
    """`env` with a chat port, a handoff topic of its own (created), and the tests' credentials."""
    handoff_topic = f"{env['ENRICHER_APP_ID']}.handoffs"
    await create_topics(kafka, {handoff_topic: 2})
    own = {"ENRICHER_CHAT_PORT": str(free_port()), "ENRICHER_HANDOFF_TOPIC": handoff_topic}
    return env | own | doors_env(tokens_file)


@pytest.fixture(scope="session")
def studio_tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokens file with the tests' staff token (tests/helpers/credentials.py)."""
    return write_tokens_file(tmp_path_factory.mktemp("studio"))


@asynccontextmanager
async def _started(env: dict[str, str], log_path: Path) -> AsyncIterator[Gateway]:
    gateway = Gateway(env, log_path)
    try:
        await gateway.start()
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
async def chat_env(enricher_env: dict[str, str], kafka: str, studio_tokens_file: Path) -> dict[str, str]:
    """`enricher_env` with a chat port and a handoff topic of this test's own (created)."""
    return await _for_chat(enricher_env, kafka, studio_tokens_file)


@pytest.fixture
async def gateway(chat_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Gateway]:
    """A started gateway, stopped after the test: for a test that stops it, or needs one that has
    seen nothing else."""
    async with _started(chat_env, tmp_path / "chat.log") as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def shared_chat_env(shared_env: dict[str, str], kafka: str, studio_tokens_file: Path) -> dict[str, str]:
    """`chat_env` for a whole module (`shared_env`): its tests share the topics and the Redis
    database, so each uses conversation, message and reply ids of its own."""
    return await _for_chat(shared_env, kafka, studio_tokens_file)


@pytest.fixture(scope="module")
async def shared_gateway(
    shared_chat_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """One started gateway on `shared_chat_env` for a module's tests, stopped after the last: a
    start takes about two seconds. Tests on it must not stop it."""
    async with _started(shared_chat_env, tmp_path_factory.mktemp("chat") / "chat.log") as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def shared_chat_worker(
    shared_chat_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Worker]:
    """`shared_worker` on `shared_chat_env`, behind `shared_gateway`. Tests on it must not stop it."""
    with running_workers(shared_chat_env, tmp_path_factory.mktemp("chat-worker")) as factory:
        yield await factory()


@pytest.fixture(scope="session")
async def _chromium() -> AsyncIterator[Browser]:
    """Headless chromium from Debian (installed here if missing and possible, else skipped), one
    for the session: a launch costs seconds."""
    executable = debian_command("chromium", "chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def browser(_chromium: Browser) -> AsyncIterator[Browser]:
    """The session's chromium; each `new_page` is a fresh context, and the pages a test opened
    are closed after it, so no page of one test is still connected during the next."""
    before = set(_chromium.contexts)
    yield _chromium
    for context in set(_chromium.contexts) - before:
        await context.close()
