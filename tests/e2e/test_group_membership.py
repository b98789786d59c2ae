"""The consumer group across stops and restarts: a stopping worker leaves at once; a worker
with a static identity comes back as itself."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from app.kafka.faust_app import build_app
from app.settings import Settings
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import ANSWERED, metric, replies_to_all, wait_for_exit
from tests.helpers.kafka import answered, produce_many, worker_caught_up
from tests.helpers.messages import request
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e

SESSION_TIMEOUT_S = 20.0


@SEVERAL_PROCESSES
async def test_a_sigterm_moves_the_partitions_to_the_other_worker_before_the_session_timeout(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env | {"ENRICHER_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S)}
    await mock_admin.config(latency_ms=20)
    # Together, so that both are in the group's first generation: Tansu numbers it 0, from
    # which aiokafka alone would send no LeaveGroup.
    stopping, staying = await asyncio.gather(worker_factory(env), worker_factory(env))
    warm_up = [request(f"w{c}-0", f"w{c}", "hello") for c in range(16)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], warm_up)
    # Caught up: a worker commits a message once it has counted it.
    await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], warm_up, timeout_s=30, caught_up=env)
    assert await metric(stopping, ANSWERED) > 0, "the stopping worker must own partitions"

    stopping.process.signal(signal.SIGTERM)
    assert await asyncio.to_thread(wait_for_exit, stopping, 20) == 0
    gone = time.monotonic()
    before = await metric(staying, ANSWERED)
    inputs = [request(f"c{c}-0", f"c{c}", "where is my order?") for c in range(16)]  # every partition
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60)

    # A member that had not left would keep its partitions until its session timed out.
    assert time.monotonic() - gone < SESSION_TIMEOUT_S
    await worker_caught_up(kafka, env)
    assert await metric(staying, ANSWERED) - before == len(inputs)


def test_the_instance_id_and_session_timeout_reach_the_consumer() -> None:
    settings = Settings.model_validate(
        {
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "ENRICHER_GROUP_INSTANCE_ID": "worker-0",
            "ENRICHER_SESSION_TIMEOUT_S": "8",
        }
    )
    conf = build_app(settings).conf
    assert (conf.consumer_group_instance_id, conf.broker_session_timeout) == ("worker-0", 8.0)
    dynamic = build_app(settings.model_copy(update={"group_instance_id": None})).conf
    assert dynamic.consumer_group_instance_id is None


@SEVERAL_PROCESSES
async def test_a_crashed_static_member_restarted_as_itself_answers_what_it_left(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    env = enricher_env | {"ENRICHER_GROUP_INSTANCE_ID": "support-worker-0"}
    await mock_admin.config(latency_ms=300)
    crashing = await worker_factory(env)
    inputs = [request(f"c{c}-{t}", f"c{c}", f"turn {t}") for t in range(3) for c in range(16)]
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], inputs)
    await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs[:1], timeout_s=30)
    crashing.kill()

    await worker_factory(env)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=60)
    assert set(answered(replies)) == {f"c{c}-{t}" for t in range(3) for c in range(16)}
