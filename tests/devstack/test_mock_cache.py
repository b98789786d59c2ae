"""The mock LLM's prompt cache, over HTTP: a repeated prefix is reported as cached tokens."""

from __future__ import annotations

import httpx

from devstack.mock_llm.server import serve
from devstack.mock_llm.state import MockConfig


async def test_a_repeated_prefix_is_reported_as_cached_tokens() -> None:
    system = {"role": "system", "content": "You are a support agent. " * 20}
    first = {"model": "gpt-4o-mini", "messages": [system, {"role": "user", "content": "one"}]}
    second = {"model": "gpt-4o-mini", "messages": [system, {"role": "user", "content": "two"}]}
    async with serve(MockConfig(latency_ms=0)) as url, httpx.AsyncClient(base_url=url) as http:
        cold = (await http.post("/chat/completions", json=first)).json()["usage"]
        warm = (await http.post("/chat/completions", json=second)).json()["usage"]

    assert cold["prompt_tokens_details"]["cached_tokens"] == 0
    assert 0 < warm["prompt_tokens_details"]["cached_tokens"] < warm["prompt_tokens"]
