"""The tools a reply may call, on real services: lookups in a real Redis, HTTP tools against a real
local server; every failure a result, never an exception."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from app.context import ContextStore
from app.llm.tool_calls import ToolCall, ToolResult
from app.prompts.tools_file import ToolSpec, read_tools
from app.redis_client import connect
from app.settings import Settings
from app.tools import MAX_ANSWER_BYTES, Toolbox
from devstack.processes import free_port
from tests.helpers.orders import order
from tests.helpers.workers import PROMPTS

TOOLS = """\
tools:
  - name: parcel
    description: A parcel's state.
    parameters:
      type: object
      properties:
        tracking_number: {type: string}
        detail: {type: string}
      required: [tracking_number]
    timeout_s: 0.5
    http:
      url: "BASE/parcels/{tracking_number}"
      headers: {Authorization: "Bearer ${TRACKING_TOKEN}"}
      keep: [status, eta]
  - name: raw
    description: The whole answer.
    parameters: {type: object, properties: {path: {type: string}}, required: [path]}
    timeout_s: 0.5
    http:
      url: "BASE/{path}"
      method: POST
"""


class Service:
    """A real HTTP server that records each request and answers by path."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.bodies: list[bytes] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.bodies.append(await request.read())
        path = request.match_info["path"].rsplit("/", 1)[-1]
        if path == "slow":
            await asyncio.sleep(5)
        if path == "broken":
            return web.Response(status=500, text="internal error")
        if path == "huge":
            return web.Response(text="x" * (MAX_ANSWER_BYTES + 1))
        body = {"status": "in transit", "eta": "2026-11-28", "depot": "Leipzig", "path": path}
        return web.json_response(body)


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, str]]:
    recorder = Service()
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield recorder, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def store(service_settings: Settings) -> AsyncIterator[ContextStore]:
    redis = connect(service_settings.redis_url.get_secret_value(), 4, cluster=False)
    context = ContextStore(redis, history_turns=0, ttl_s=60, orders_ttl_s=60)
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
async def toolbox(store: ContextStore) -> AsyncIterator[Toolbox]:
    box = Toolbox(store, {"TRACKING_TOKEN": "s3cret"})
    try:
        yield box
    finally:
        await box.aclose()


def http_tools(tmp_path: Path, base: str) -> tuple[ToolSpec, ...]:
    path = tmp_path / "tools.yaml"
    path.write_text(TOOLS.replace("BASE", base))
    tools, problems = read_tools(path)
    assert problems == []
    return tools.tools


def shipped_tools() -> tuple[ToolSpec, ...]:
    return read_tools(PROMPTS / "tools.yaml")[0].tools


async def call(
    toolbox: Toolbox,
    tools: tuple[ToolSpec, ...],
    name: str,
    arguments: object,
    *,
    customer: str | None = "cust-1",
) -> ToolResult:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return await toolbox.for_customer(customer, tools).run(ToolCall("call-1", name, text))


async def test_the_order_lookup_answers_with_the_asking_customer_s_order(
    store: ContextStore, toolbox: Toolbox
) -> None:
    await store.put_order(order("A-1042", "cust-1", "shipped"))
    result = await call(toolbox, shipped_tools(), "order_status", {"order_id": "a-1042"})

    assert result.ok
    answer = json.loads(result.content)
    assert (answer["order_id"], answer["status"], answer["carrier"]) == ("A-1042", "shipped", "DHL")
    assert answer["items"] == [{"sku": "KB-1", "name": "Mechanical keyboard", "qty": 1}]
    assert {"placed_at", "updated_at", "tracking_number"} <= set(answer)
    assert "customer_id" not in answer


async def test_another_customer_s_order_is_not_found_and_nothing_of_it_is_told(
    store: ContextStore, toolbox: Toolbox
) -> None:
    await store.put_order(order("B-7", "cust-2", "delivered"))
    for customer in ("cust-1", None):
        result = await call(toolbox, shipped_tools(), "order_status", {"order_id": "B-7"}, customer=customer)
        assert result.ok
        assert result.content == "not found: the customer has no order 'B-7'"


async def test_what_each_call_returns_is_told_unless_the_call_fails(
    store: ContextStore, toolbox: Toolbox
) -> None:
    await store.put_order(order("A-1042", "cust-1", "shipped"))
    told: list[str] = []
    tools = toolbox.for_customer("cust-1", shipped_tools(), told)

    found = await tools.run(ToolCall("call-1", "order_status", '{"order_id": "A-1042"}'))
    failed = await tools.run(ToolCall("call-2", "order_status", "{}"))

    assert (found.ok, failed.ok) == (True, False)
    assert told == [found.content]


def test_the_runner_declares_its_tools_in_the_openai_format(toolbox: Toolbox) -> None:
    [declaration] = toolbox.for_customer("cust-1", shipped_tools()).declarations()
    assert declaration["type"] == "function"
    assert declaration["function"]["name"] == "order_status"
    assert toolbox.for_customer("cust-1", ()).declarations() == []


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("refund", {"order_id": "A-1"}, "error: there is no tool 'refund': the tools are order_status"),
        ("order_status", "{not json", "error: bad arguments: not a JSON object"),
        ("order_status", {"order": "A-1"}, "error: bad arguments: 'order_id' is a required property"),
        ("order_status", {"order_id": 1042}, "error: bad arguments: order_id: 1042 is not of type 'string'"),
    ],
)
async def test_an_unknown_tool_or_bad_arguments_are_a_failed_result(
    toolbox: Toolbox, name: str, arguments: object, error: str
) -> None:
    assert await call(toolbox, shipped_tools(), name, arguments) == ToolResult(error, ok=False)


async def test_redis_down_fails_the_lookup_as_a_result() -> None:
    down = ContextStore(connect("redis://127.0.0.1:1/0", 2, cluster=False), history_turns=0, ttl_s=60)
    box = Toolbox(down, {})
    try:
        result = await call(box, shipped_tools(), "order_status", {"order_id": "A-1"})
    finally:
        await box.aclose()
        await down.aclose()
    assert result == ToolResult("error: the orders cannot be read just now", ok=False)


async def test_an_http_tool_fills_the_url_sends_the_headers_and_keeps_the_listed_fields(
    tmp_path: Path, service: tuple[Service, str], toolbox: Toolbox
) -> None:
    recorder, base = service
    tools = http_tools(tmp_path, base)

    result = await call(toolbox, tools, "parcel", {"tracking_number": "00 34/5?x", "detail": "full"})

    assert result == ToolResult(json.dumps({"status": "in transit", "eta": "2026-11-28"}), ok=True)
    [sent] = recorder.requests
    assert sent.raw_path == "/parcels/00%2034%2F5%3Fx?detail=full"
    assert sent.headers["Authorization"] == "Bearer s3cret"


async def test_a_post_tool_sends_the_other_arguments_as_json_and_gets_the_whole_answer(
    tmp_path: Path, service: tuple[Service, str], toolbox: Toolbox
) -> None:
    recorder, base = service
    result = await call(toolbox, http_tools(tmp_path, base), "raw", {"path": "here"})

    assert result.ok
    assert json.loads(result.content)["depot"] == "Leipzig"
    assert recorder.requests[0].method == "POST"
    assert json.loads(recorder.bodies[0]) == {}


@pytest.mark.parametrize(
    ("name", "path", "error"),
    [
        ("parcel", "slow", "error: no answer within 0.5 s"),
        ("parcel", "broken", "error: the service answered HTTP 500"),
        ("raw", "huge", f"error: the service's answer is over {MAX_ANSWER_BYTES // 1024} KiB"),
    ],
)
async def test_a_slow_failing_or_oversized_service_is_a_failed_result(
    tmp_path: Path, service: tuple[Service, str], toolbox: Toolbox, name: str, path: str, error: str
) -> None:
    _, base = service
    key = "tracking_number" if name == "parcel" else "path"
    result = await call(toolbox, http_tools(tmp_path, base), name, {key: path})
    assert result == ToolResult(error, ok=False)


async def test_an_unreachable_service_or_a_missing_variable_is_a_failed_result(
    tmp_path: Path, store: ContextStore
) -> None:
    tools = http_tools(tmp_path, f"http://127.0.0.1:{free_port()}")
    box = Toolbox(store, {})
    try:
        missing = await call(box, tools, "parcel", {"tracking_number": "1"})
        unreachable = await call(box, tools, "raw", {"path": "x"})
    finally:
        await box.aclose()
    assert missing == ToolResult(
        "error: the tool is not set up: the worker has no TRACKING_TOKEN in its environment", ok=False
    )
    assert unreachable == ToolResult("error: the service cannot be reached (ConnectError)", ok=False)
