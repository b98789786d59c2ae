"""`enricher dev`'s chat gateway: started on the configured port, serving, its studio behind this
run's token, stopped with the stack."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from app.settings import Settings
from devstack.chat_gateway import start_chat
from devstack.dev_config import STATE_DIR
from tests.helpers.credentials import doors_env


async def test_dev_starts_the_gateway_and_stops_it_with_the_rest(
    chat_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # dev's log directory is relative to where it runs
    # As a developer's shell has it: none of the tests' credentials, dev makes its own.
    own = {key: value for key, value in chat_env.items() if key not in doors_env(Path())}
    settings = Settings.model_validate(own)
    async with AsyncExitStack() as stack:
        chat = await start_chat(stack, settings, {**os.environ, **own})
        assert chat.url == f"http://127.0.0.1:{chat_env['ENRICHER_CHAT_PORT']}/"
        assert chat.studio_url.startswith(f"{chat.url}studio?token=")
        async with httpx.AsyncClient(base_url=chat.url) as client:
            assert "Support chat" in (await client.get("/")).text
            assert (await client.get("/healthz")).json()["broker"]["connected"] is True
            assert (await client.get("/studio")).status_code == 401
            studio = await client.get(chat.studio_url, follow_redirects=True)  # the cookie is kept
            assert (studio.status_code, studio.url) == (200, f"{chat.url}studio")
            assert "Template studio" in studio.text
            login = await client.post("/api/dev/login", json={"customer_id": "cust-1"})
            customer = {"Authorization": f"Bearer {login.json()['token']}"}
            body = {"conversation_id": "c-dev", "text": "Hello"}
            assert (await client.post("/api/messages", json=body, headers=customer)).status_code == 202
    with pytest.raises(ProcessLookupError):  # stopped and reaped with the stack
        os.kill(chat.pid, 0)
    assert "the chat page is on" in (tmp_path / STATE_DIR / "chat.log").read_text()
