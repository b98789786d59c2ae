"""A real `enricher chat` process for tests (tests/chat/conftest.py starts them), and customers'
messages posted through it."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.processes import CONTRACT_PREFIXES, ManagedProcess
from tests.helpers.credentials import as_customer
from tests.helpers.workers import REPO

READY_TIMEOUT_S = 30.0


@dataclass
class Gateway:
    """One `enricher chat` child process; `restart()` stops it and starts another on the same port."""

    env: dict[str, str]
    log_path: Path
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL, ending in `/`."""
        return f"http://127.0.0.1:{self.env['ENRICHER_CHAT_PORT']}/"

    async def start(self) -> None:
        """Start it and wait until it reads the topics (its `/readyz`)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(CONTRACT_PREFIXES)}
        self.process = ManagedProcess(
            "chat",
            [sys.executable, "-m", "app.main", "chat"],
            env=inherited | self.env | {"PYTHONUNBUFFERED": "1"},
            log_path=self.log_path,
            cwd=REPO,
        ).start()
        try:
            await self.process.wait_http_ok(f"{self.url}readyz", READY_TIMEOUT_S)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.process.log_tail()}") from None

    def stop(self) -> int | None:
        """SIGINT (then harder); the exit code."""
        return self.process.stop(10.0) if self.process is not None else None

    async def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        await self.start()


async def post_messages(client: httpx.AsyncClient, texts: list[str]) -> None:
    """Send each text as cust-1 through the gateway, each in a new conversation of its own (so they
    spread over the input topic's partitions)."""
    for text in texts:
        body = {"conversation_id": f"c-studio-{uuid.uuid4().hex[:8]}", "text": text}
        response = await client.post("/api/messages", json=body, headers=as_customer("cust-1"))
        assert response.status_code == 202, response.text
