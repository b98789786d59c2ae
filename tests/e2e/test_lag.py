"""Consumer lag on /metrics: it grows while the worker cannot answer and falls to 0 once it catches up."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.kafka import answering_at_least, produce_many, read_topic
from tests.helpers.polling import until
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import Worker, WorkerFactory

pytestmark = pytest.mark.e2e


def requests(prefix: str, count: int) -> list[tuple[str, bytes]]:
    def document(n: int) -> bytes:
        return json.dumps(
            {"message_id": f"{prefix}-{n}", "conversation_id": f"{prefix}-c{n % 8}", "text": "Hi"}
        ).encode()

    return [(f"{prefix}-c{n % 8}", document(n)) for n in range(count)]


async def metric(worker: Worker, name: str) -> dict[tuple[str, str], float]:
    """The samples of `name` on the worker's /metrics, by (topic, partition)."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        page = (await client.get(f"{worker.web_url}/metrics")).text
    return {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == name
    }


async def lag_becomes(worker: Worker, topic: str, wanted: str, timeout_s: float) -> float:
    """Wait until the input topic's total lag is `> 0` or `== 0`; returns it."""
    total = 0.0

    async def reached() -> bool:
        nonlocal total
        lags = await metric(worker, "enricher_kafka_consumer_lag")
        total = sum(value for (name, _), value in lags.items() if name == topic)
        return bool(lags) and (total > 0 if wanted == "> 0" else total == 0)

    await until(reached, f"lag of {topic} {wanted}", timeout_s)
    return total


@SEVERAL_PROCESSES
async def test_lag_grows_while_the_llm_stalls_and_returns_to_zero(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env
    topic = env["ENRICHER_INPUT_TOPIC"]
    worker = await worker_factory({"ENRICHER_LLM_TIMEOUT_S": "2"})
    await produce_many(kafka, topic, requests("warm", 8))
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=answering_at_least(8))
    assert await lag_becomes(worker, topic, "== 0", timeout_s=20) == 0

    await mock_admin.config(hang_rate=1.0)
    await produce_many(kafka, topic, requests("stalled", 40))
    assert await lag_becomes(worker, topic, "> 0", timeout_s=30) >= 8  # at least one per conversation

    await mock_admin.config(hang_rate=0.0)
    await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=answering_at_least(48), timeout_s=120)
    assert await lag_becomes(worker, topic, "== 0", timeout_s=30) == 0
