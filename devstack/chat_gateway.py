"""The chat gateway as a child of `enricher dev`, on ENRICHER_CHAT_PORT when set, else 8080 or a
free port; with a staff token made for this run, the demo login, and a JWT secret (the
environment's, else a random one)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

from app.settings import Settings, studio_token_line
from devstack.dev_config import STATE_DIR
from devstack.processes import ManagedProcess, pick_port

CHAT_PORT = 8080
READY_TIMEOUT_S = 30.0
TOKENS_PATH = STATE_DIR / "studio-tokens"


@dataclass(frozen=True)
class DevChat:
    """The running gateway: its page's URL, its pid, and the studio's URL with this run's token."""

    url: str
    pid: int
    studio_url: str


def _staff_token() -> str:
    """A new staff token, its hash written to TOKENS_PATH (readable by this user only)."""
    token = secrets.token_urlsafe(32)
    TOKENS_PATH.parent.mkdir(parents=True, exist_ok=True)
    TOKENS_PATH.unlink(missing_ok=True)
    descriptor = os.open(TOKENS_PATH, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(studio_token_line("dev", token))
    return token


async def start_chat(stack: AsyncExitStack, settings: Settings, env: Mapping[str, str]) -> DevChat:
    """Start `enricher chat` with `env` (what points it at dev's broker and Redis), stopped by
    `stack`; once it reads the topics, where it serves."""
    port = settings.chat_port if "chat_port" in settings.model_fields_set else pick_port(CHAT_PORT)
    token = _staff_token()
    doors = {"ENRICHER_STUDIO_TOKENS_FILE": str(TOKENS_PATH.resolve()), "ENRICHER_CHAT_DEV_LOGIN": "on"}
    if settings.chat_jwt_secret is None:
        doors["ENRICHER_CHAT_JWT_SECRET"] = secrets.token_urlsafe(32)
    gateway = ManagedProcess(
        "chat",
        [sys.executable, "-m", "app.main", "chat"],
        env={**env, **doors, "ENRICHER_CHAT_PORT": str(port)},
        log_path=STATE_DIR / "chat.log",
    )
    stack.callback(gateway.stop, 5.0)
    pid = gateway.start().pid
    url = f"http://127.0.0.1:{port}/"
    await gateway.wait_http_ok(f"{url}readyz", READY_TIMEOUT_S)
    return DevChat(url, pid, f"{url}studio?token={token}")
