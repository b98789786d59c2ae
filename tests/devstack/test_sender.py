"""`enricher send` against a real worker: the reply, its streamed chunks, dead letters, timeouts; and
`enricher send --order`, an order record the worker keeps."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import TYPE_CHECKING

import pytest

from app.context import ContextStore
from app.redis_client import connect
from app.schemas import CustomerMessage, ReplyChunk
from app.settings import Settings
from devstack.sender import Endpoints, SendError, order_now, run_send_order, send_and_wait
from tests.helpers.polling import until

if TYPE_CHECKING:
    from devstack.mock_llm.admin import MockAdmin
    from tests.helpers.workers import Worker


def _message(text: str) -> CustomerMessage:
    return CustomerMessage(message_id=f"m-{uuid.uuid4()}", conversation_id="c-send", text=text)


async def test_send_prints_reply_and_chunks_or_dead_letter(
    shared_worker: Worker, mock_admin: MockAdmin
) -> None:
    endpoints = Endpoints.from_settings(shared_worker.settings)
    chunks: list[ReplyChunk] = []
    message = _message("Where is my order?")

    reply = await send_and_wait(endpoints, message, timeout_s=30, on_chunk=chunks.append)

    assert reply.message_id == message.message_id
    assert reply.status == "ok"
    assert "Where is my order?" in reply.text
    assert len(await mock_admin.requests()) == 1
    # Chunks and the reply travel on different topics: some chunks may still be on their way.
    assert {chunk.message_id for chunk in chunks} <= {message.message_id}
    with pytest.raises(SendError, match="too_large"):
        await send_and_wait(endpoints, _message("x" * 9000), timeout_s=30)


async def test_send_times_out_without_a_worker(enricher_settings: Settings) -> None:
    endpoints = Endpoints.from_settings(enricher_settings)
    with pytest.raises(SendError, match="no reply"):
        await send_and_wait(endpoints, _message("anyone there?"), timeout_s=1)


async def test_send_refuses_a_missing_topic(enricher_settings: Settings) -> None:
    settings = enricher_settings.model_copy(update={"reply_topic": f"missing-{uuid.uuid4().hex}"})
    with pytest.raises(SendError, match="does not exist"):
        await send_and_wait(Endpoints.from_settings(settings), _message("hello"), timeout_s=1)


async def test_send_order_publishes_a_record_the_worker_keeps(shared_worker: Worker) -> None:
    settings = shared_worker.settings
    endpoints = Endpoints.from_settings(settings)
    build = functools.partial(order_now, "A-77", "cust-9", "packed", ["Desk lamp"], "DHL", "T-1")

    assert await asyncio.to_thread(run_send_order, endpoints, build) == 0

    context = ContextStore(
        connect(settings.redis_url.get_secret_value(), 2, cluster=False), history_turns=0, ttl_s=60
    )
    try:

        async def kept() -> bool:
            return [(o.order_id, o.status) for o in await context.orders("cust-9")] == [("A-77", "packed")]

        await until(kept, "the sent order in Redis")
    finally:
        await context.aclose()
    bad = functools.partial(order_now, "A-78", "cust-9", "lost", ["Desk lamp"])
    assert run_send_order(endpoints, bad) == 2
