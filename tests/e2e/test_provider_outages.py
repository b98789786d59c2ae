"""Delivery promises while the LLM provider fails or refuses: the breaker pauses, a quota slows."""

from __future__ import annotations

import httpx
import pytest

from app.worker import running_jobs
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import assert_in_input_order, metric, replies_to_all
from tests.helpers.kafka import answered, json_values, produce_many, read_topic
from tests.helpers.messages import request
from tests.helpers.polling import until
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e

PROBE_LOGGED = "letting one call through as a probe"
"""What the worker logs each time its open breaker lets a call through (app/llm/health.py)."""


async def test_an_llm_outage_pauses_the_worker_instead_of_flooding_the_dlq(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    in_flight = 4
    worker = await worker_factory(
        {
            "ENRICHER_MAX_IN_FLIGHT": str(in_flight),
            "ENRICHER_LLM_TIMEOUT_S": "1",
            "ENRICHER_LLM_DEADLINE_S": "2",
        }
    )
    await mock_admin.config(error_rate=1.0)
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t}") for t in range(6) for c in range(10)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)

    # The outage lasts until the breaker has let two probes through: the first a second after it
    # opened, the next two seconds after the first one's last failure, about three deadlines in
    # all. Without the breaker, every deadline would send another wave of fallbacks.
    async def two_probes_let_through() -> bool:
        assert worker.process.log_path is not None
        return worker.process.log_path.read_text().count(PROBE_LOGGED) >= 2

    await until(two_probes_let_through, "the breaker letting a second probe through", timeout_s=20)
    async with httpx.AsyncClient(timeout=5) as client:
        readiness = await client.get(f"{worker.web_url}/readyz")
    assert readiness.status_code == 503
    assert readiness.json()["reasons"]["llm"].startswith("failing, new messages wait: HTTP 500")
    assert await metric(worker, "enricher_llm_circuit_open") == 1
    during = json_values(await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"]))

    await mock_admin.config(error_rate=0.0)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60, caught_up=env)
    letters = json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"]))

    fallbacks = [r for r in replies if r["status"] == "fallback"]
    assert len(answered(replies)) == len(inputs)
    assert {r["status"] for r in during} == {"fallback"}  # nothing but fallbacks while it was down
    assert set(answered(during)) <= set(answered(fallbacks))  # a probe may still be running into its deadline
    # Those running when it opened, and a probe every few seconds; without the breaker every
    # deadline of the outage would send another round of running_jobs to the fallback.
    assert 1 <= len(fallbacks) <= running_jobs(in_flight) + 4
    # One dead letter for each message a fallback answered, so each can be re-driven.
    assert sorted(letter["error"]["kind"] for letter in letters) == ["llm_unavailable"] * len(
        answered(fallbacks)
    )
    assert_in_input_order(replies)
    assert await metric(worker, "enricher_llm_circuit_open") == 0


async def test_a_429_storm_slows_the_worker_without_opening_the_breaker(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    worker = await worker_factory({"ENRICHER_MAX_IN_FLIGHT": "8", "ENRICHER_LLM_DEADLINE_S": "60"})
    await mock_admin.config(rate_limit_rate=1.0, retry_after_s=0.2)
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t}") for t in range(3) for c in range(10)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)

    async def slowed_down() -> bool:
        refused = await metric(worker, 'enricher_llm_rate_limited_total{model="gpt-4o-mini"}', absent=0)
        return refused >= 10 and await metric(worker, "enricher_llm_concurrency_limit") <= 2

    # Cut at each round of refusals, from 8; meanwhile neither the breaker nor readiness moves.
    await until(slowed_down, "ten refusals and the concurrency limit cut to 2 or less")
    async with httpx.AsyncClient(timeout=5) as client:
        readiness = await client.get(f"{worker.web_url}/readyz")
    open_during = await metric(worker, "enricher_llm_circuit_open")

    await mock_admin.config(rate_limit_rate=0.0)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60)

    assert open_during == 0
    assert readiness.status_code == 200  # slowed down, not down
    assert {r["status"] for r in replies} == {"ok"}
    assert len(answered(replies)) == len(inputs)
    assert_in_input_order(replies)
