"""Who may use the gateway, on real gateways, broker and Redis: staff by token, session cookie or a
trusted proxy's header; customers by JWT, each in their own conversations only; and what every
request passes (host, Origin, JSON bodies of bounded size, rate limits, security headers).

Most tests share the module's gateway, each with customers and conversations of its own; two
gateways of their own show the settings that change who gets in.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from devstack.processes import free_port
from tests.helpers.credentials import JWT_SECRET, STAFF, STAFF_TOKEN, as_customer, customer_token
from tests.helpers.gateway import Gateway
from tests.helpers.polling import until
from tests.helpers.sse_client import SseClient
from tests.helpers.studio_drafts import FILE, MISSPELT_FIELD

STUDIO_ROUTES = [
    ("GET", "/studio"),
    ("GET", "/api/studio/templates"),
    ("GET", "/api/studio/customers"),
    ("POST", "/api/studio/render"),
    ("POST", "/api/studio/try"),
]
PROXY_HEADER = "X-Auth-Request-Email"
POSTS_PER_MIN, TRIES_PER_MIN, STREAMS_PER_IDENTITY = 5, 2, 2


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _b64(document: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


async def _wait_for_text(path: Path, text: str, count: int, timeout_s: float = 10.0) -> None:
    """Until `text` is in the file `count` times (a child process writes it)."""

    async def written() -> bool:
        return (await asyncio.to_thread(path.read_text)).count(text) >= count

    await until(written, f"{text!r} {count} times in {path}", timeout_s)


@pytest.fixture(scope="module")
async def limited(
    shared_chat_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """A gateway behind an SSO proxy on this machine, with low rate and stream limits."""
    own = {
        "ENRICHER_CHAT_PORT": str(free_port()),
        "ENRICHER_AUTH_PROXY_HEADER": PROXY_HEADER,
        "ENRICHER_TRUSTED_PROXIES": "127.0.0.0/8",
        "ENRICHER_CHAT_POSTS_PER_MIN": str(POSTS_PER_MIN),
        "ENRICHER_STUDIO_TRIES_PER_MIN": str(TRIES_PER_MIN),
        "ENRICHER_CHAT_STREAMS_PER_IDENTITY": str(STREAMS_PER_IDENTITY),
    }
    gateway = Gateway(shared_chat_env | own, tmp_path_factory.mktemp("limited") / "chat.log")
    await gateway.start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
async def locked(
    shared_chat_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """A gateway without the demo login, whose SSO proxy is another machine."""
    own = {
        "ENRICHER_CHAT_PORT": str(free_port()),
        "ENRICHER_AUTH_PROXY_HEADER": PROXY_HEADER,
        "ENRICHER_TRUSTED_PROXIES": "192.0.2.1",
        "ENRICHER_CHAT_DEV_LOGIN": "off",
    }
    gateway = Gateway(shared_chat_env | own, tmp_path_factory.mktemp("locked") / "chat.log")
    await gateway.start()
    yield gateway
    gateway.stop()


@pytest.mark.parametrize(("method", "path"), STUDIO_ROUTES)
async def test_the_studio_refuses_anyone_not_staff(shared_gateway: Gateway, method: str, path: str) -> None:
    refused = [{}, {"Authorization": "Bearer not-a-staff-token"}, as_customer("cust-1")]
    async with httpx.AsyncClient(base_url=shared_gateway.url) as client:
        for headers in refused:
            response = await client.request(method, path, json={}, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["error"]["kind"] == "unauthenticated"
        staff = await client.request(method, path, json={}, headers=STAFF)
    assert staff.status_code in (200, 422), staff.text  # in: an empty body is refused as a body


async def test_the_token_url_sets_a_session_cookie_that_opens_the_studio(shared_gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=shared_gateway.url) as client:
        assert (await client.get("/studio", params={"token": "wrong"})).status_code == 401
        login = await client.get("/studio", params={"token": STAFF_TOKEN})
        assert login.status_code == 303
        assert login.headers["location"] == f"{shared_gateway.url}studio"  # the token out of the URL
        cookie = login.headers["set-cookie"]
        assert "httponly" in cookie.lower()
        assert "samesite=strict" in cookie.lower()
        assert "secure" not in cookie.lower()  # served over plain HTTP here
        assert STAFF_TOKEN not in cookie
        assert (await client.get("/api/studio/templates")).status_code == 200  # the cookie alone
        assert (await client.get("/studio")).status_code == 200
        name, value = next(iter(client.cookies.items()))
        client.cookies.set(name, value[:-1] + ("0" if value[-1] != "0" else "1"))  # tampered with
        assert (await client.get("/api/studio/templates")).status_code == 401


async def test_a_proxy_header_is_believed_only_from_a_trusted_proxy(
    limited: Gateway, locked: Gateway
) -> None:
    who = {PROXY_HEADER: "ada@example.com"}
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{limited.url}api/studio/templates", headers=who)).status_code == 200
        assert (await client.get(f"{limited.url}api/studio/templates")).status_code == 401
        # From a peer that is not the proxy, whatever X-Forwarded-For claims.
        spoofed = who | {"X-Forwarded-For": "192.0.2.1"}
        assert (await client.get(f"{locked.url}api/studio/templates", headers=spoofed)).status_code == 401
        assert (await client.get(f"{locked.url}api/studio/templates", headers=STAFF)).status_code == 200


async def test_without_the_demo_login_there_is_no_login_and_no_customer_list(locked: Gateway) -> None:
    async with httpx.AsyncClient(base_url=locked.url) as client:
        assert (await client.get("/api/customers")).status_code == 404
        assert (await client.post("/api/dev/login", json={"customer_id": "cust-1"})).status_code == 404
        body = {"conversation_id": _new_id("c"), "text": "Hello"}
        assert (await client.post("/api/messages", json=body, headers=as_customer("c1"))).status_code == 202


async def test_the_demo_login_gives_a_token_for_the_customer(shared_gateway: Gateway) -> None:
    customer = _new_id("cust")
    async with httpx.AsyncClient(base_url=shared_gateway.url) as client:
        login = await client.post("/api/dev/login", json={"customer_id": customer})
        token = login.json()["token"]
        body = {"conversation_id": _new_id("c"), "text": "Hello"}
        posted = await client.post("/api/messages", json=body, headers={"Authorization": f"Bearer {token}"})
        assert posted.status_code == 202, posted.text
        assert (await client.post("/api/dev/login", json={"customer_id": ""})).status_code == 422


async def test_a_customer_sees_only_their_own_conversations(
    shared_gateway: Gateway, shared_chat_env: dict[str, str]
) -> None:
    alice, bob = _new_id("alice"), _new_id("bob")
    written, listened = _new_id("c-written"), _new_id("c-listened")
    async with httpx.AsyncClient(base_url=shared_gateway.url) as client:
        posted = await client.post(
            "/api/messages", json={"conversation_id": written, "text": "Hi"}, headers=as_customer(alice)
        )
        assert posted.status_code == 202, posted.text
        message_id = posted.json()["message_id"]
        async with aioredis.from_url(shared_chat_env["REDIS_URL"], socket_timeout=5.0) as redis:
            reply = {"conversation_id": written, "message_id": message_id, "text": "Hello Alice"}
            await redis.set(f"reply:{message_id}", json.dumps(reply))
        replies = f"/api/conversations/{written}/replies/{message_id}"
        assert (await client.get(replies, headers=as_customer(alice))).json()["text"] == "Hello Alice"
        async with SseClient(
            f"{shared_gateway.url}api/conversations/{listened}/events", headers=as_customer(alice)
        ):
            pass  # the page listens before it writes: listening claims the conversation too

        for conversation in (written, listened):
            body = {"conversation_id": conversation, "text": "Let me in"}
            intruder = await client.post("/api/messages", json=body, headers=as_customer(bob))
            assert (intruder.status_code, intruder.json()["error"]["kind"]) == (403, "not_yours")
            events = await client.get(f"/api/conversations/{conversation}/events", headers=as_customer(bob))
            assert events.status_code == 403
        assert (await client.get(replies, headers=as_customer(bob))).status_code == 403
        as_bob = {"conversation_id": written, "customer_id": bob, "text": "I am Bob"}
        mismatch = await client.post("/api/messages", json=as_bob, headers=as_customer(alice))
        assert (mismatch.status_code, mismatch.json()["error"]["kind"]) == (403, "customer_mismatch")


async def test_a_bad_customer_token_is_refused(shared_gateway: Gateway) -> None:
    customer = _new_id("cust")
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': customer, 'exp': time.time() + 600})}."
    bad = {
        "wrong signature": customer_token(customer, key="another secret, at least 32 characters"),
        "alg none": unsigned,
        "expired": customer_token(customer, ttl_s=-120),  # beyond the 30 s leeway
        "no exp": jwt.encode({"sub": customer}, JWT_SECRET, algorithm="HS256"),
        "not a JWT": "hello",
    }
    conversation = _new_id("c")
    async with httpx.AsyncClient(base_url=shared_gateway.url) as client:
        for why, token in bad.items():
            headers = {"Authorization": f"Bearer {token}"}
            body = {"conversation_id": conversation, "text": "Hi"}
            assert (await client.post("/api/messages", json=body, headers=headers)).status_code == 401, why
            events = f"/api/conversations/{conversation}/events"
            assert (await client.get(events, params={"access_token": token})).status_code == 401, why
        good = await client.post(
            "/api/messages",
            json={"conversation_id": conversation, "text": "Hi"},
            headers=as_customer(customer),
        )
        assert good.status_code == 202


async def test_a_cross_site_post_is_refused(shared_gateway: Gateway) -> None:
    customer = _new_id("cust")
    body = json.dumps({"conversation_id": _new_id("c"), "text": "Hi"})
    headers = as_customer(customer)
    async with httpx.AsyncClient(base_url=shared_gateway.url, headers=headers) as client:
        for media_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            form = await client.post("/api/messages", content=body, headers={"Content-Type": media_type})
            assert (form.status_code, form.json()["error"]["kind"]) == (415, "not_json"), media_type
        json_type = {"Content-Type": "application/json"}
        foreign = await client.post(
            "/api/messages", content=body, headers=json_type | {"Origin": "https://evil.example"}
        )
        assert (foreign.status_code, foreign.json()["error"]["kind"]) == (403, "foreign_origin")
        own = await client.post(
            "/api/messages", content=body, headers=json_type | {"Origin": shared_gateway.url.rstrip("/")}
        )
        assert own.status_code == 202, own.text
        studio = await client.post(
            "/api/studio/render", json={}, headers=STAFF | {"Origin": "https://evil.example"}
        )
        assert studio.status_code == 403


async def test_a_body_over_256_kib_is_refused_before_it_is_read(shared_gateway: Gateway) -> None:
    port = int(shared_gateway.url.rsplit(":", 1)[1].strip("/"))
    head = (
        "POST /api/messages HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Authorization: Bearer {customer_token(_new_id('cust'))}\r\n"
    )
    # The length says 5 MB and not a byte of it is sent: the answer can only come before reading it.
    async with asyncio.timeout(5.0):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{head}Content-Length: {5 * 1024 * 1024}\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10.0):
        status_line = await reader.readline()
    assert status_line.startswith(b"HTTP/1.1 413")
    writer.close()
    # Without a length, the read stops once past the limit.
    async with asyncio.timeout(5.0):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"x" * (300 * 1024)
    writer.write(f"{head}Transfer-Encoding: chunked\r\n\r\n{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    await writer.drain()
    async with asyncio.timeout(10.0):
        status_line = await reader.readline()
    assert status_line.startswith(b"HTTP/1.1 413")
    writer.close()


async def test_posts_tries_and_streams_are_limited_per_identity(limited: Gateway) -> None:
    alice, bob = _new_id("alice"), _new_id("bob")
    async with httpx.AsyncClient(base_url=limited.url) as client:
        statuses = []
        started = time.monotonic()
        for number in range(200):
            body = {"conversation_id": f"c-{alice}", "text": f"message {number}"}
            statuses.append(
                (await client.post("/api/messages", json=body, headers=as_customer(alice))).status_code
            )
        taken_s = time.monotonic() - started
        assert statuses[: POSTS_PER_MIN + 1] == [202] * POSTS_PER_MIN + [429]
        # The bucket leaks one post each 60 / POSTS_PER_MIN s: a slow machine may be let in again.
        assert statuses.count(202) <= POSTS_PER_MIN + 1 + int(taken_s * POSTS_PER_MIN / 60)
        assert set(statuses) == {202, 429}
        other = await client.post(
            "/api/messages", json={"conversation_id": f"c-{bob}", "text": "Hi"}, headers=as_customer(bob)
        )
        assert other.status_code == 202  # the limit is alice's, not everyone's

        draft = {"template": FILE, "draft": MISSPELT_FIELD, "n": 1}  # refused without the LLM
        tries = [
            (await client.post("/api/studio/try", json=draft, headers=STAFF)).status_code for _ in range(3)
        ]
        assert tries == [422] * TRIES_PER_MIN + [429]
    await _wait_for_text(
        limited.log_path, f"draft try by tester: {FILE} on the newest 1 messages", TRIES_PER_MIN
    )

    url = f"{limited.url}api/conversations/{{}}/events"
    async with (
        SseClient(url.format(_new_id("c")), headers=as_customer(alice)),
        SseClient(url.format(_new_id("c")), headers=as_customer(alice)),
        httpx.AsyncClient() as client,
    ):
        third = await client.get(url.format(_new_id("c")), headers=as_customer(alice))
        assert (third.status_code, third.json()["error"]["kind"]) == (429, "too_many_streams")
        async with SseClient(url.format(_new_id("c")), headers=as_customer(bob)):
            pass  # another customer still gets one

    # Streams that end give their slots back, also one cut before its first event was sent.
    for _ in range(STREAMS_PER_IDENTITY + 1):
        port = int(limited.env["ENRICHER_CHAT_PORT"])
        async with asyncio.timeout(5.0):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        token = as_customer(alice)["Authorization"]
        path = f"/api/conversations/{_new_id('c')}/events"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def both_slots_free() -> bool:
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", url.format(_new_id("c")), headers=as_customer(alice)) as one,
            client.stream("GET", url.format(_new_id("c")), headers=as_customer(alice)) as other,
        ):
            return one.status_code != 429 and other.status_code != 429

    await until(both_slots_free, "the closed streams' slots given back", timeout_s=10)
    async with (
        SseClient(url.format(_new_id("c")), headers=as_customer(alice)),
        SseClient(url.format(_new_id("c")), headers=as_customer(alice)),
    ):
        pass


async def test_every_response_carries_the_security_headers_and_hosts_are_checked(
    shared_gateway: Gateway,
) -> None:
    async with httpx.AsyncClient(base_url=shared_gateway.url) as client:
        responses = [
            await client.get("/"),
            await client.get("/static/chat.js"),
            await client.get("/healthz"),
            await client.get("/studio"),  # a refusal too
            await client.post("/api/messages", content="x", headers={"Content-Type": "text/plain"}),
        ]
        for response in responses:
            headers = response.headers
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "no-referrer"
        assert (await client.get("/healthz", headers={"Host": "evil.example"})).status_code == 400
