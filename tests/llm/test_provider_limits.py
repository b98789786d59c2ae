"""LLMClient at the provider's limits, against the mock LLM over HTTP: quotas are not outages,
the concurrency limit follows the provider, Retry-After paces every retry, exhausted models cool."""

from __future__ import annotations

import asyncio

import pytest

from app.devtools.mock_llm.admin import MockAdmin
from app.devtools.mock_llm.server import serve
from app.devtools.mock_llm.state import MockConfig
from app.errors import LLMUnavailable
from app.llm import first_token, model_health
from app.llm.client import CallOptions, LLMClient
from app.settings import Settings
from app.tokens import ChatMessage

MODEL = "gpt-4o-mini"
FALLBACK = "gpt-4o"


def chat(text: str) -> list[ChatMessage]:
    return [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": text}]


def settings(url: str, **env: str) -> Settings:
    defaults = {"OPENAI_BASE_URL": url, "ENRICHER_LLM_DEADLINE_S": "10", "ENRICHER_LLM_TIMEOUT_S": "2"}
    return Settings.model_validate(defaults | env)


async def answer_all(client: LLMClient, count: int, prefix: str) -> None:
    await asyncio.gather(*(client.complete(chat(f"{prefix} {n}"), CallOptions()) for n in range(count)))


async def test_a_429_storm_never_opens_the_breaker_but_an_outage_does() -> None:
    config = MockConfig(latency_ms=0, rate_limit_rate=1.0, retry_after_s=0.05)
    async with serve(config) as url, MockAdmin(url) as admin:
        client = LLMClient(settings(url, ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1"))
        storm = [client.complete(chat(f"hello {n}"), CallOptions()) for n in range(5)]
        outcomes = await asyncio.gather(*storm, return_exceptions=True)
        assert all(isinstance(outcome, LLMUnavailable) for outcome in outcomes)
        throttled = (await admin.stats())["requests"]
        storm_opened = client.breaker.is_open

        await admin.config(rate_limit_rate=0.0, error_rate=1.0)
        outage = [client.complete(chat(f"hello again {n}"), CallOptions()) for n in range(5)]
        await asyncio.gather(*outage, return_exceptions=True)
        outage_opened = client.breaker.is_open
        await client.aclose()

    assert throttled >= 5  # more 429s in a row than it takes failures to open the breaker
    assert not storm_opened
    assert outage_opened


async def test_the_concurrency_limit_falls_under_a_quota_and_rises_when_it_is_lifted() -> None:
    config = MockConfig(latency_ms=100, concurrency_quota=24, retry_after_s=0.05)
    async with serve(config) as url, MockAdmin(url) as admin:
        client = LLMClient(settings(url, ENRICHER_MAX_IN_FLIGHT="64"))
        await answer_all(client, 400, "under the quota")
        under_quota = await admin.stats()
        limit_under_quota = client.concurrency_limit

        await admin.config(concurrency_quota=0)
        await admin.reset()
        await answer_all(client, 400, "quota lifted")
        lifted = await admin.stats()
        await client.aclose()

    assert limit_under_quota <= 25
    assert under_quota["max_in_flight"] <= 24
    # The limit starts at the ceiling: the first wave's calls over the quota are refused once,
    # then few more (at most 0.05 per answer) as it comes down and probes.
    assert under_quota["refused"] <= (64 - 24) + 400 * 0.05
    assert client.concurrency_limit >= 40
    assert lifted["max_in_flight"] >= 32
    assert lifted["refused"] == 0


async def test_with_adaptation_off_the_limit_stays_at_the_ceiling() -> None:
    config = MockConfig(latency_ms=50, concurrency_quota=16, retry_after_s=0.05)
    async with serve(config) as url, MockAdmin(url) as admin:
        client = LLMClient(settings(url, ENRICHER_MAX_IN_FLIGHT="64", ENRICHER_LLM_ADAPTIVE="off"))
        calls = (client.complete(chat(f"fixed {n}"), CallOptions()) for n in range(400))
        # A fixed limit over the quota may starve a call past its deadline on a busy machine:
        # that is the failure adaptation removes, not this test's subject.
        await asyncio.gather(*calls, return_exceptions=True)
        stats = await admin.stats()
        await client.aclose()

    assert client.concurrency_limit == 64
    assert stats["refused"] > 100  # the same load that the adaptive limit keeps under the quota


async def test_a_retry_after_on_one_call_delays_the_other_calls_next_attempts() -> None:
    async with serve(MockConfig(latency_ms=0)) as url, MockAdmin(url) as admin:
        await admin.script(
            {"match": "first", "status": 429, "retry_after": 2}, {"match": "second", "status": 500}
        )
        client = LLMClient(settings(url))
        first = asyncio.create_task(client.complete(chat("first"), CallOptions()))
        await asyncio.sleep(0.2)
        await client.complete(chat("second"), CallOptions())
        await first
        await client.aclose()
        recorded = await admin.requests()

    def received(text: str) -> list[float]:
        return [r["received_at"] for r in recorded if r["messages"][-1]["content"] == text]

    (refused_at, _), (failed_at, retried_at) = received("first"), received("second")
    assert failed_at - refused_at < 1.0  # its own first attempt was not held
    assert retried_at - refused_at >= 1.9  # its retry waited out the other call's Retry-After


async def test_an_exhausted_main_model_is_cooled_down_and_used_again_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_health, "FIRST_COOLDOWN_S", 1.0)
    config = MockConfig(latency_ms=0, exhausted_models=(MODEL,))
    async with serve(config) as url, MockAdmin(url) as admin:
        client = LLMClient(settings(url, ENRICHER_FALLBACK_MODELS=FALLBACK))
        answered_by = [(await client.complete(chat(f"m{n}"), CallOptions())).model for n in range(10)]
        exhausted = [r["model"] for r in await admin.requests()]
        refused = (await admin.stats())["refused"]

        await admin.config(exhausted_models=[])
        await asyncio.sleep(1.1)
        again = (await client.complete(chat("after the cool-down"), CallOptions())).model
        await client.aclose()

    assert answered_by == [FALLBACK] * 10
    assert refused == 1  # the main model's one refusal, then one call per message
    assert exhausted == [FALLBACK] * 10
    assert again == MODEL


async def test_a_hung_call_is_dropped_at_the_learned_first_token_deadline_and_answered_once() -> None:
    async with serve(MockConfig(latency_ms=0)) as url, MockAdmin(url) as admin:
        client = LLMClient(settings(url, ENRICHER_LLM_TIMEOUT_S="10", ENRICHER_LLM_DEADLINE_S="30"))
        await answer_all(client, 10, "seen")  # fast first tokens: the deadline becomes the floor
        await admin.reset()
        await admin.script({"hang": True})
        began = asyncio.get_running_loop().time()
        completion = await client.complete(chat("hangs once"), CallOptions())
        elapsed = asyncio.get_running_loop().time() - began
        requests = (await admin.stats())["requests"]
        await client.aclose()

    assert completion.text
    assert requests == 2  # the hung attempt and its retry
    assert 1.0 <= elapsed < 3.0  # not the 10 s attempt timeout


async def test_a_slow_thinking_model_is_not_cut_off_once_it_has_been_seen() -> None:
    async with serve(MockConfig(latency_ms=0)) as url, MockAdmin(url) as admin:
        await admin.script(*({"latency_ms": 5000} for _ in range(11)))  # first token after 2.5 s
        client = LLMClient(settings(url, ENRICHER_LLM_TIMEOUT_S="10", ENRICHER_LLM_DEADLINE_S="30"))
        await answer_all(client, 10, "thinking")
        completion = await client.complete(chat("thinking again"), CallOptions())
        stats = await admin.stats()
        await client.aclose()

    assert completion.text
    assert (stats["requests"], stats["errors"]) == (11, 0)


async def test_a_call_hung_before_the_deadline_was_learned_gets_the_learned_one() -> None:
    async with serve(MockConfig(latency_ms=0)) as url, MockAdmin(url) as admin:
        await admin.script({"hang": True})  # one call of the first wave hangs
        client = LLMClient(settings(url, ENRICHER_LLM_TIMEOUT_S="10", ENRICHER_LLM_DEADLINE_S="30"))
        began = asyncio.get_running_loop().time()
        await answer_all(client, 1 + first_token.MIN_SAMPLES, "first wave")
        elapsed = asyncio.get_running_loop().time() - began
        requests = (await admin.stats())["requests"]
        await client.aclose()

    assert requests == 2 + first_token.MIN_SAMPLES  # the hung attempt was retried once
    assert elapsed < 6.0  # dropped at the learned deadline (at least 1 s), not the 10 s attempt timeout
