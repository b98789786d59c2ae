"""What the tools answer may be in the reply, end to end: a real worker, broker, Redis, the mock LLM
calling the tools of a tools.yaml, and a real HTTP server behind an `http` tool. The output guard
lets the answer repeat what this reply's tools returned (an order's shipment id shaped like the
conversation's own, a courier's e-mail address), masked for the LLM and restored for the customer,
and still blocks such data in a reply whose tools did not return it."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from app.context import ContextStore
from app.redis_client import connect
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import replies_to_all
from tests.helpers.kafka import at_least, json_values, produce, read_topic
from tests.helpers.messages import request
from tests.helpers.orders import order, order_value
from tests.helpers.polling import until
from tests.helpers.workers import PROMPTS, WorkerFactory

pytestmark = pytest.mark.e2e

COURIER_EMAIL = "dispatch@fastparcel.example"
# The carrier's shipment id is a UUID, as the conversations' ids are: shaped like the conversation's
# own id, it is someone else's to the guard unless a tool of this reply gave it.
SHIPMENT = str(uuid.UUID(int=0x5F0C))
TOOLS_YAML = """\
tools:
  - name: order_status
    description: The status of one of the customer's orders.
    parameters:
      type: object
      properties:
        order_id: {{type: string}}
      required: [order_id]
    lookup: {{table: orders, key: order_id}}
  - name: courier_contact
    description: Who delivers a parcel, and how to reach them.
    parameters:
      type: object
      properties:
        tracking_number: {{type: string}}
      required: [tracking_number]
    timeout_s: 2
    http:
      url: {couriers}/couriers/{{tracking_number}}
      keep: [courier, email]
"""


@pytest.fixture
async def couriers() -> AsyncIterator[str]:
    """A courier directory on a real local HTTP server: every parcel's courier and its address."""

    async def courier(_: web.Request) -> web.Response:
        return web.json_response({"courier": "FastParcel", "email": COURIER_EMAIL, "depot": "internal-7"})

    app = web.Application()
    app.add_routes([web.get("/couriers/{number}", courier)])
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
def tool_prompts(tmp_path: Path, couriers: str) -> Path:
    prompts = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    (prompts / "tools.yaml").write_text(TOOLS_YAML.format(couriers=couriers))
    return prompts


async def test_a_reply_may_repeat_what_its_own_tools_returned_and_nothing_of_another_s(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    tool_prompts: Path,
) -> None:
    env = enricher_env
    shipped = order("A-1042", status="shipped", items=[], carrier="FastParcel", tracking_number=SHIPMENT)
    await produce(kafka, env["ENRICHER_ORDERS_TOPIC"], "cust-1", order_value(shipped))
    # No tool is called for a scripted answer: this reply's tools return nothing.
    await mock_admin.script(
        {"match": "NO-TOOLS-1", "text": f"Write to {COURIER_EMAIL} about it."},
        {"match": "NO-TOOLS-2", "text": f"Your shipment is {SHIPMENT}."},
    )
    await worker_factory({"ENRICHER_PROMPTS_DIR": str(tool_prompts)})
    await orders_kept(env, "cust-1")
    conversations = {name: str(uuid.uuid4()) for name in ("order", "courier", "email", "shipment")}
    inputs = [
        request("m-order", conversations["order"], "Where is my order A-1042?", customer_id="cust-1"),
        request("m-courier", conversations["courier"], "Who delivers tracking T-77?", customer_id="cust-1"),
        request("m-email", conversations["email"], "Whom do I write? NO-TOOLS-1", customer_id="cust-1"),
        request("m-shipment", conversations["shipment"], "My shipment? NO-TOOLS-2", customer_id="cust-1"),
    ]
    for key, value in inputs:
        await produce(kafka, env["ENRICHER_INPUT_TOPIC"], key, value)

    replies = {
        reply["message_id"]: reply
        for reply in await replies_to_all(kafka, env["ENRICHER_REPLY_TOPIC"], inputs, timeout_s=20)
    }
    letters = json_values(await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"], until=at_least(2)))
    told = [m["content"] for r in await mock_admin.requests() for m in r["messages"] if m["role"] == "tool"]

    # The order's shipment id, shaped like the conversation's UUID, came from the order lookup.
    mine = replies["m-order"]
    assert (mine["status"], [t["name"] for t in mine["tools"]]) == ("ok", ["order_status"])
    assert SHIPMENT in mine["text"], mine["text"]

    # The courier's address came from the HTTP tool: the LLM read a placeholder, the customer reads it.
    courier = replies["m-courier"]
    assert (courier["status"], [t["name"] for t in courier["tools"]]) == ("ok", ["courier_contact"])
    assert COURIER_EMAIL in courier["text"], courier["text"]
    [from_courier] = [text for text in told if "FastParcel" in text and "order_id" not in text]
    assert COURIER_EMAIL not in from_courier
    assert "[EMAIL_1]" in from_courier
    assert "internal-7" not in from_courier  # only the fields the tool keeps

    # The same data in a reply whose tools returned none of it is someone else's: blocked.
    assert replies["m-email"]["status"] == replies["m-shipment"]["status"] == "fallback"
    assert COURIER_EMAIL not in replies["m-email"]["text"]
    assert SHIPMENT not in replies["m-shipment"]["text"]
    assert sorted(letter["error"]["detail"].split(":")[0] for letter in letters) == [
        "foreign_email",
        "foreign_id",
    ]


async def orders_kept(env: dict[str, str], customer_id: str) -> None:
    """Wait until the worker keeps an order of `customer_id` in Redis."""
    context = ContextStore(connect(env["REDIS_URL"], 2, cluster=False), history_turns=0, ttl_s=60)
    try:

        async def kept() -> bool:
            return bool(await context.orders(customer_id))

        await until(kept, f"{customer_id}'s orders in Redis", timeout_s=15)
    finally:
        await context.aclose()
