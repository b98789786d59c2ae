"""The chat gateway as a child of `enricher dev`, on ENRICHER_CHAT_PORT when set, else 8080 or a free port."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack

from app.devtools.dev_config import STATE_DIR
from app.devtools.processes import ManagedProcess, pick_port
from app.settings import Settings

CHAT_PORT = 8080
READY_TIMEOUT_S = 30.0


async def start_chat(stack: AsyncExitStack, settings: Settings, env: Mapping[str, str]) -> tuple[str, int]:
    """Start `enricher chat` with `env` (what points it at dev's broker and Redis), stopped by
    `stack`; once it reads the topics, its page's URL and its pid."""
    port = settings.chat_port if "chat_port" in settings.model_fields_set else pick_port(CHAT_PORT)
    gateway = ManagedProcess(
        "chat",
        [sys.executable, "-m", "app.main", "chat"],
        env={**env, "ENRICHER_CHAT_PORT": str(port)},
        log_path=STATE_DIR / "chat.log",
    )
    stack.callback(gateway.stop, 5.0)
    pid = gateway.start().pid
    url = f"http://127.0.0.1:{port}/"
    await gateway.wait_http_ok(f"{url}readyz", READY_TIMEOUT_S)
    return url, pid
