"""The mock LLM's provider limits, over HTTP: request quota, concurrency quota, exhausted models."""

from __future__ import annotations

import asyncio

import httpx

from devstack.mock_llm.admin import MockAdmin
from devstack.mock_llm.server import serve
from devstack.mock_llm.state import MockConfig

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_request_quota_refuses_beyond_it_with_retry_after_and_counts_down_its_headers() -> None:
    async with serve(MockConfig(latency_ms=0, request_quota_per_s=3)) as url, MockAdmin(url) as admin:
        async with httpx.AsyncClient(base_url=url) as http:
            answers = [await http.post("/chat/completions", json=BODY) for _ in range(4)]
        stats = await admin.stats()

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers[:3]] == ["2", "1", "0"]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[2].headers["x-ratelimit-reset-requests"].endswith("ms")
    assert 0 < int(answers[3].headers["retry-after-ms"]) <= 1000
    assert answers[3].json()["error"]["code"] == "rate_limit_exceeded"
    assert (stats["requests"], stats["refused"]) == (3, 1)


async def test_a_concurrency_quota_refuses_calls_beyond_it_while_they_are_in_flight() -> None:
    config = MockConfig(latency_ms=300, concurrency_quota=2, retry_after_s=0.5)
    async with serve(config) as url, httpx.AsyncClient(base_url=url, timeout=5) as http:
        answers = await asyncio.gather(*(http.post("/chat/completions", json=BODY) for _ in range(4)))
        after = await http.post("/chat/completions", json=BODY)

    assert sorted(a.status_code for a in answers) == [200, 200, 429, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.headers["retry-after-ms"] == "500"
    assert after.status_code == 200


async def test_an_exhausted_model_answers_insufficient_quota_without_retry_after() -> None:
    config = MockConfig(latency_ms=0, exhausted_models=("gpt-4o-mini",))
    async with serve(config) as url, httpx.AsyncClient(base_url=url) as http:
        exhausted = await http.post("/chat/completions", json=BODY)
        other = await http.post("/chat/completions", json=BODY | {"model": "gpt-4o"})

    assert exhausted.status_code == 429
    assert exhausted.json()["error"]["code"] == "insufficient_quota"
    assert "retry-after" not in exhausted.headers
    assert other.status_code == 200
