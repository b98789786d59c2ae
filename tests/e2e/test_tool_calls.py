"""Tools the LLM calls, end to end: a real worker, broker, Redis, the mock LLM calling the tools of
a tools.yaml, and a real HTTP server behind the `http` tool."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from app.context import ContextStore
from app.redis_client import connect
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import committed_offset, every_message_answered, replies_to_all
from tests.helpers.kafka import produce, producing, read_topic, send_all
from tests.helpers.messages import request
from tests.helpers.orders import order, order_value
from tests.helpers.polling import until
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import PROMPTS, WorkerFactory

pytestmark = pytest.mark.e2e

HANG_S = 10.0  # longer than the tool's timeout: a carrier that does not answer in time
TOOLS_YAML = """\
tools:
  - name: order_status
    description: The status of one of the customer's orders.
    parameters:
      type: object
      properties:
        order_id: {{type: string, description: "The order number, e.g. A-1042"}}
      required: [order_id]
    lookup: {{table: orders, key: order_id}}
  - name: delivery_estimate
    description: When the carrier expects to deliver a parcel.
    parameters:
      type: object
      properties:
        tracking_number: {{type: string}}
      required: [tracking_number]
    timeout_s: 1
    http:
      url: {carrier}/parcels/{{tracking_number}}
      keep: [status, eta]
"""


class Carrier:
    """A parcel service on a real local HTTP server: `SLOW-*` parcels hang, `FAIL-*` answer 500,
    the others their status; every request is counted by parcel."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()

    async def parcel(self, request: web.Request) -> web.Response:
        number = request.match_info["number"]
        self.asked[number] += 1
        if number.startswith("SLOW-"):
            await asyncio.sleep(HANG_S)
        if number.startswith("FAIL-"):
            return web.json_response({"error": "the parcel database is down"}, status=500)
        return web.json_response({"status": "out for delivery", "eta": "2026-12-01", "depot": "internal-7"})


@pytest.fixture
async def carrier() -> AsyncIterator[tuple[Carrier, str]]:
    service = Carrier()
    app = web.Application()
    app.add_routes([web.get("/parcels/{number}", service.parcel)])
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield service, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def tool_prompts(tmp_path: Path, carrier: tuple[Carrier, str]) -> Path:
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS, prompts)
    (prompts / "tools.yaml").write_text(TOOLS_YAML.format(carrier=carrier[1]))
    return prompts


async def orders_kept(env: dict[str, str], customer_id: str, count: int) -> None:
    """Wait until the worker keeps `count` orders of `customer_id` in Redis."""
    context = ContextStore(connect(env["REDIS_URL"], 2, cluster=False), history_turns=0, ttl_s=60)
    try:

        async def kept() -> bool:
            return len(await context.orders(customer_id)) >= count

        await until(kept, f"{customer_id}'s orders in Redis", timeout_s=25)
    finally:
        await context.aclose()


def by_message(replies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {reply["message_id"]: reply for reply in replies}


def tool_messages(chat_requests: list[dict[str, Any]]) -> list[str]:
    """What the tools answered, as the mock LLM received it."""
    return [m["content"] for r in chat_requests for m in r["messages"] if m["role"] == "tool"]


async def test_an_order_s_status_reaches_its_customer_through_a_tool_and_nobody_else(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    tool_prompts: Path,
    carrier: tuple[Carrier, str],
) -> None:
    env = enricher_env
    shipped = order("A-1042", status="shipped", tracking_number="TRK-7731")
    await produce(kafka, env["ENRICHER_ORDERS_TOPIC"], "cust-1", order_value(shipped))
    await worker_factory({"ENRICHER_PROMPTS_DIR": str(tool_prompts)})
    await orders_kept(env, "cust-1", 1)
    inputs = [
        request("mine", "conv-1", "Where is my order A-1042?", customer_id="cust-1"),
        request("theirs", "conv-2", "Where is my order A-1042?", customer_id="cust-2"),
        request("slow", "conv-3", "When does tracking SLOW-1 arrive?", customer_id="cust-1"),
        request("failing", "conv-4", "When does tracking FAIL-1 arrive?", customer_id="cust-1"),
        request("parcel", "conv-5", "When does tracking OK-1 arrive?", customer_id="cust-1"),
    ]
    for key, value in inputs:
        await produce(kafka, env["ENRICHER_INPUT_TOPIC"], key, value)

    replies = by_message(await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=25))

    assert {reply["status"] for reply in replies.values()} == {"ok"}
    mine, theirs = replies["mine"], replies["theirs"]
    assert "shipped" in mine["text"], mine["text"]
    assert "TRK-7731" in mine["text"], mine["text"]
    assert [(tool["name"], tool["ok"]) for tool in mine["tools"]] == [("order_status", True)]
    assert isinstance(mine["tools"][0]["ms"], int)
    assert "shipped" not in theirs["text"], theirs["text"]
    assert "TRK-7731" not in theirs["text"], theirs["text"]
    assert [tool["name"] for tool in theirs["tools"]] == ["order_status"]
    for failing in ("slow", "failing"):
        assert [(t["name"], t["ok"]) for t in replies[failing]["tools"]] == [("delivery_estimate", False)]
    parcel = replies["parcel"]
    assert "out for delivery" in parcel["text"]
    assert "internal-7" not in parcel["text"]  # only the fields the tool keeps reach the LLM
    assert [(t["name"], t["ok"]) for t in parcel["tools"]] == [("delivery_estimate", True)]
    assert carrier[0].asked == Counter({"SLOW-1": 1, "FAIL-1": 1, "OK-1": 1})
    told = tool_messages(await mock_admin.requests())
    assert len(told) == 5
    assert sum("shipped" in text for text in told) == 1


@SEVERAL_PROCESSES
async def test_a_redelivery_after_sigkill_calls_no_tool_again(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    tool_prompts: Path,
    carrier: tuple[Carrier, str],
) -> None:
    env = enricher_env
    topic, group = env["ENRICHER_INPUT_TOPIC"], env["ENRICHER_APP_ID"]
    await mock_admin.script({"match": "slow one", "hold": True})
    # Slow, not hung: a fixed first-token deadline keeps the held call in flight until the kill.
    overrides = {"ENRICHER_PROMPTS_DIR": str(tool_prompts), "ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S": "60"}
    first = await worker_factory(overrides)
    # On one partition: the held message first, so the tool's message after it is not committed.
    inputs = [
        request("held", "conv-held", "slow one"),
        request("parcel", "conv-parcel", "When does tracking OK-7 arrive?", customer_id="cust-1"),
    ]
    async with producing(kafka) as producer:
        await send_all(producer, topic, inputs, partition=0)
    await read_topic(
        kafka, env["ENRICHER_REPLY_TOPIC"], until=every_message_answered({"parcel"}), timeout_s=20
    )
    assert await committed_offset(kafka, group, topic, 0) <= 0  # both come again after the kill
    first.kill()
    await mock_admin.release()

    await worker_factory(overrides)
    replies = await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=40, caught_up=env)

    assert carrier[0].asked == Counter({"OK-7": 1})
    parcel = [reply for reply in replies if reply["message_id"] == "parcel"]
    assert len(parcel) == 1, "a redelivered message whose reply was published is not repeated"
    assert [(t["name"], t["ok"]) for t in parcel[0]["tools"]] == [("delivery_estimate", True)]
    assert await committed_offset(kafka, group, topic, 0) == len(inputs)
    assert await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"]) == []
