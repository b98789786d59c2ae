"""`enricher chat` on the real broker and Redis: messages in over HTTP, replies out over SSE.

The tests share one gateway, its topics and Redis database (`shared_gateway`), so each uses
conversation and message ids of its own and looks only at its own records.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app.observability.tracing import TraceContext
from app.schemas import ReplyChunk, parse_message, reply_id_for
from app.settings import Settings
from tests.helpers.credentials import as_customer
from tests.helpers.gateway import Gateway
from tests.helpers.kafka import produce_many, read_topic
from tests.helpers.replies import reply
from tests.helpers.sse_client import SseClient, SseEvent
from tests.helpers.workers import REPO


def _reply(conversation_id: str, message_id: str, text: str) -> bytes:
    return reply(message_id, text, conversation_id).model_dump_json().encode()


def _chunk(conversation_id: str, message_id: str, seq: int, delta: str, done: bool = False) -> bytes:
    chunk = ReplyChunk(
        reply_id=reply_id_for(message_id),
        message_id=message_id,
        conversation_id=conversation_id,
        seq=seq,
        delta=delta,
        done=done,
    )
    return chunk.model_dump_json().encode()


def _new_id(prefix: str) -> str:
    """An id no other test on the shared gateway uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _events_url(gateway: Gateway, conversation_id: str) -> str:
    return f"{gateway.url}api/conversations/{conversation_id}/events"


def _listen(gateway: Gateway, conversation_id: str, customer_id: str, **options: Any) -> SseClient:
    """The event stream of the conversation, as `customer_id` listens to it."""
    return SseClient(_events_url(gateway, conversation_id), headers=as_customer(customer_id), **options)


def _kinds(events: list[SseEvent]) -> dict[str, list[str]]:
    """Each kind's texts in the order they came: the topics are read side by side, so only the
    order within one topic (and conversation) is given."""
    texts: dict[str, list[str]] = {}
    for event in events:
        texts.setdefault(event.kind, []).append(event.data.get("delta") or event.data.get("text", ""))
    return texts


async def test_a_posted_message_is_on_the_input_topic_as_the_worker_reads_it(
    shared_gateway: Gateway, shared_chat_env: dict[str, str], kafka: str
) -> None:
    settings = Settings.model_validate(shared_chat_env)
    conversation = _new_id("c-post")
    body = {"conversation_id": conversation, "text": "Where is my order?"}  # the customer: the token's
    async with httpx.AsyncClient(base_url=shared_gateway.url, headers=as_customer("cust-1")) as client:
        response = await client.post("/api/messages", json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()

    records = await read_topic(kafka, settings.input_topic)  # the 202 came once the broker had it
    [record] = [record for record in records if record.key == conversation.encode()]
    message = parse_message(record.value, settings.max_input_chars, record.headers)  # as the worker does
    assert (message.message_id, message.conversation_id) == (accepted["message_id"], conversation)
    assert (message.customer_id, message.text, message.channel) == ("cust-1", "Where is my order?", "chat")
    assert message.sent_at is not None
    trace = TraceContext.of(record.headers)
    assert trace.parent_id is not None, f"no valid traceparent in {record.headers}"
    assert trace.trace_id == accepted["trace_id"]


async def test_a_refused_message_gets_the_reason_and_nothing_is_produced(
    shared_gateway: Gateway, shared_chat_env: dict[str, str], kafka: str
) -> None:
    settings = Settings.model_validate(shared_chat_env)
    # Every body carries this test's tag, so its records are told from other tests' on the topic.
    tag = _new_id("refused")
    bad, good = f"c-bad-{tag}", f"c-good-{tag}"
    too_long = tag + "x" * settings.max_input_chars
    refused = [
        ({"conversation_id": bad, "text": too_long}, "too_large"),
        ({"conversation_id": bad, "text": 5}, "invalid_message"),
        ({"conversation_id": "", "text": f"hello {tag}"}, "invalid_message"),
        ({"text": f"hello {tag}"}, "invalid_message"),
        (["not", "an", "object", tag], "invalid_message"),
    ]
    async with httpx.AsyncClient(base_url=shared_gateway.url, headers=as_customer(tag)) as client:
        for body, kind in refused:
            response = await client.post("/api/messages", json=body)
            assert response.status_code == 422, body
            assert response.json()["error"]["kind"] == kind, response.text
            assert response.json()["error"]["detail"]
        not_json = await client.post(
            "/api/messages", content=f"{{nope {tag}".encode(), headers={"content-type": "application/json"}
        )
        assert (not_json.status_code, not_json.json()["error"]["kind"]) == (422, "invalid_json")
        accepted = await client.post("/api/messages", json={"conversation_id": good, "text": "fine"})
        assert accepted.status_code == 202

    # Read to the end, past the accepted message: what was refused would be there too.
    records = await read_topic(kafka, settings.input_topic)
    assert [record.key for record in records if tag.encode() in record.value] == [good.encode()]


async def test_each_conversation_sees_its_own_chunks_and_replies_only(
    shared_gateway: Gateway, shared_chat_env: dict[str, str], kafka: str
) -> None:
    settings = Settings.model_validate(shared_chat_env)
    ours, theirs = _new_id("c"), _new_id("c")
    me, them = _new_id("cust"), _new_id("cust")
    async with (
        _listen(shared_gateway, ours, me) as tab,
        _listen(shared_gateway, ours, me) as second_tab,
        _listen(shared_gateway, theirs, them) as other,
    ):
        assert tab.retry_ms is not None, "the stream does not tell the browser when to reconnect"
        await produce_many(
            kafka,
            settings.stream_topic,
            [
                (ours, _chunk(ours, "m-1", 0, "Hi ")),
                (theirs, _chunk(theirs, "m-2", 0, "Hello ")),
                (ours, _chunk(ours, "m-1", 1, "there", done=True)),
            ],
        )
        await produce_many(
            kafka,
            settings.reply_topic,
            [(theirs, _reply(theirs, "m-2", "Hello you")), (ours, _reply(ours, "m-1", "Hi there"))],
        )
        await produce_many(
            kafka,
            settings.handoff_topic,
            [(ours, json.dumps({"conversation_id": ours, "message_id": "m-3", "text": "human?"}).encode())],
        )
        expected = {"chunk": ["Hi ", "there"], "reply": ["Hi there"], "handoff": ["human?"]}
        for listener in (tab, second_tab):
            events = await listener.wait_for(lambda events: len(events) >= 4)
            assert _kinds(events) == expected
        other_events = await other.wait_for(lambda events: len(events) >= 2)
        assert _kinds(other_events) == {"chunk": ["Hello "], "reply": ["Hello you"]}
    assert all(event.data["conversation_id"] == ours for event in tab.events)
    assert all(event.data["conversation_id"] == theirs for event in other.events)


async def test_a_reconnecting_browser_gets_what_it_missed(
    shared_gateway: Gateway, shared_chat_env: dict[str, str], kafka: str
) -> None:
    settings = Settings.model_validate(shared_chat_env)
    conversation, me = _new_id("c"), _new_id("cust")
    # Another tab stays on throughout: once it has all three events, so has the gateway.
    async with _listen(shared_gateway, conversation, me) as witness:
        async with _listen(shared_gateway, conversation, me) as tab:
            await produce_many(
                kafka, settings.stream_topic, [(conversation, _chunk(conversation, "m-1", 0, "one "))]
            )
            [seen] = await tab.wait_for(lambda events: len(events) >= 1)
        # The tab is gone for a while: two more records come meanwhile.
        await produce_many(
            kafka, settings.stream_topic, [(conversation, _chunk(conversation, "m-1", 1, "two", True))]
        )
        await produce_many(
            kafka, settings.reply_topic, [(conversation, _reply(conversation, "m-1", "one two"))]
        )
        await witness.wait_for(lambda events: len(events) >= 3)
        async with _listen(shared_gateway, conversation, me, last_event_id=seen.id) as back:
            events = await back.wait_for(lambda events: len(events) >= 2)
            assert _kinds(events) == {"chunk": ["two"], "reply": ["one two"]}
        # A page without Last-Event-ID, and one with an id of another gateway process (its numbers
        # mean nothing here): nothing is replayed, so the next record is the first each one gets.
        async with (
            _listen(shared_gateway, conversation, me) as fresh_page,
            _listen(shared_gateway, conversation, me, last_event_id="0badb007.1") as other_boot,
        ):
            await produce_many(
                kafka, settings.stream_topic, [(conversation, _chunk(conversation, "m-2", 0, "three"))]
            )
            for page in (fresh_page, other_boot):
                events = await page.wait_for(lambda events: len(events) >= 1)
                assert _kinds(events) == {"chunk": ["three"]}


async def test_a_stored_reply_is_served_for_its_conversation_only(
    shared_gateway: Gateway, shared_chat_env: dict[str, str]
) -> None:
    conversation, message_id, me = _new_id("c-stored"), _new_id("m-stored"), _new_id("cust")
    other_conversation = _new_id("c-other")
    async with aioredis.from_url(shared_chat_env["REDIS_URL"], socket_timeout=5.0) as redis:
        await redis.set(f"reply:{message_id}", _reply(conversation, message_id, "kept for you"))
        await redis.set(f"conversation:{conversation}:owner", me)
        await redis.set(f"conversation:{other_conversation}:owner", me)
    async with httpx.AsyncClient(base_url=shared_gateway.url, headers=as_customer(me)) as client:
        found = await client.get(f"/api/conversations/{conversation}/replies/{message_id}")
        other = await client.get(f"/api/conversations/{other_conversation}/replies/{message_id}")
        missing = await client.get(f"/api/conversations/{conversation}/replies/{_new_id('m-none')}")
    assert (found.status_code, found.json()["text"]) == (200, "kept for you")
    assert (other.status_code, missing.status_code) == (404, 404)


async def test_customers_come_from_the_profiles_and_health_shows_the_broker(
    shared_gateway: Gateway, shared_chat_env: dict[str, str]
) -> None:
    prefix = _new_id("cust")
    async with aioredis.from_url(shared_chat_env["REDIS_URL"], socket_timeout=5.0) as redis:
        await redis.hset(f"customer:{prefix}-2", mapping={"name": "Grace Hopper", "tier": "silver"})
        await redis.hset(f"customer:{prefix}-1", mapping={"name": "Ada Lovelace", "tier": "gold"})
    async with httpx.AsyncClient(base_url=shared_gateway.url) as client:
        customers = (await client.get("/api/customers")).json()["customers"]
        health = (await client.get("/healthz")).json()
        page = await client.get("/")
        script = await client.get("/static/chat.js")
    assert [(c["customer_id"], c["name"]) for c in customers if c["customer_id"].startswith(prefix)] == [
        (f"{prefix}-1", "Ada Lovelace"),
        (f"{prefix}-2", "Grace Hopper"),
    ]
    assert health["broker"]["connected"] is True
    assert page.status_code == 200
    assert "/static/chat.js" in page.text
    assert script.status_code == 200
    assert "EventSource" in script.text


def test_without_the_chat_extra_the_command_names_the_missing_module() -> None:
    # A None in sys.modules makes `import starlette` fail as if it were not installed.
    code = "import sys; sys.modules['starlette'] = None; from app.main import cli; cli(['chat'])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "starlette" in result.stderr
    assert "stream-enricher[chat]" in result.stderr


@pytest.mark.parametrize("port", ["0", "70000", "web"])
def test_a_bad_chat_port_is_a_configuration_error(port: str) -> None:
    code = "from app.main import cli; cli(['chat'])"
    env = {"PATH": "/usr/bin:/bin", "ENRICHER_CHAT_PORT": port}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "ENRICHER_CHAT_PORT" in result.stderr
