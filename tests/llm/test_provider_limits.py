"""LLMClient under a provider's concurrency quota, against the mock LLM over HTTP: the limit
follows the provider's refusals down and comes back up when the quota is lifted.

The rest of the policy at the provider's limits (429s, Retry-After, cooled models, the first-token
deadline) is tested over the seam, in test_client.py."""

from __future__ import annotations

import asyncio

from app.llm.client import CallOptions
from devstack.mock_llm.admin import MockAdmin
from devstack.mock_llm.server import serve
from devstack.mock_llm.state import MockConfig
from tests.helpers.provider import answer_all, chat, policy_at


async def test_the_concurrency_limit_falls_under_a_quota_and_rises_when_it_is_lifted() -> None:
    config = MockConfig(latency_ms=100, concurrency_quota=24, retry_after_s=0.05)
    async with serve(config) as url, MockAdmin(url) as admin:
        client = policy_at(url, ENRICHER_MAX_IN_FLIGHT="64", ENRICHER_LLM_DEADLINE_S="10")
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
        client = policy_at(
            url, ENRICHER_MAX_IN_FLIGHT="64", ENRICHER_LLM_ADAPTIVE="off", ENRICHER_LLM_DEADLINE_S="10"
        )
        calls = (client.complete(chat(f"fixed {n}"), CallOptions()) for n in range(400))
        # A fixed limit over the quota may starve a call past its deadline on a busy machine:
        # that is the failure adaptation removes, not this test's subject.
        await asyncio.gather(*calls, return_exceptions=True)
        stats = await admin.stats()
        await client.aclose()

    assert client.concurrency_limit == 64
    assert stats["refused"] > 100  # the same load that the adaptive limit keeps under the quota
