"""`enricher dev`'s chat gateway: started on the configured port, serving, stopped with the stack."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from app.devtools.chat_gateway import start_chat
from app.devtools.dev_config import STATE_DIR
from app.settings import Settings


async def test_dev_starts_the_gateway_and_stops_it_with_the_rest(
    chat_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # dev's log directory is relative to where it runs
    settings = Settings.model_validate(chat_env)
    async with AsyncExitStack() as stack:
        url, pid = await start_chat(stack, settings, os.environ | chat_env)
        assert url == f"http://127.0.0.1:{chat_env['ENRICHER_CHAT_PORT']}/"
        async with httpx.AsyncClient(base_url=url) as client:
            assert "Support chat" in (await client.get("/")).text
            assert (await client.get("/healthz")).json()["broker"]["connected"] is True
    with pytest.raises(ProcessLookupError):  # stopped and reaped with the stack
        os.kill(pid, 0)
    assert "the chat page is on" in (tmp_path / STATE_DIR / "chat.log").read_text()
