"""Mock LLM: the OpenAI-compatible HTTP server that `make run`, tests and benchmarks talk to."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from app.tokens import encoding_for
from devstack.mock_llm import quota as mock_quota
from devstack.mock_llm.admin_api import admin_routes
from devstack.mock_llm.chat import Chat, Reply, parse_chat, reply_to
from devstack.mock_llm.errors import error_response
from devstack.mock_llm.state import STATE, Json, MockConfig, MockState
from devstack.mock_llm.tools import call_deltas

MODELS = ("gpt-4o-mini", "gpt-4o", "mock-small")
CHUNKS_PER_REPLY = 6
HANG_S = 3600.0
SHUTDOWN_TIMEOUT_S = 5.0
_PIECE = re.compile(r"\S+\s*")


def _sse(payload: Json) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _unauthorized(request: web.Request, config: MockConfig) -> bool:
    if config.require_key is None:
        return False
    given = request.headers.get("Authorization", "").encode()
    return not hmac.compare_digest(given, f"Bearer {config.require_key}".encode())


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    stats = state.stats
    stats.requests += 1
    stats.in_flight += 1
    stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
    try:
        response, delivered = await _answer(request, state)
    finally:
        stats.in_flight -= 1
    if delivered and response.status < 400:
        stats.completed += 1
    else:
        stats.errors += 1
    return response


async def _answer(request: web.Request, state: MockState) -> tuple[web.StreamResponse, bool]:
    """Respond to one chat request; False when the connection was cut on purpose."""
    if _unauthorized(request, state.config):
        return error_response(401), True
    try:
        chat = parse_chat(await request.json())
    except ValueError as error:
        return error_response(400, str(error)), True
    record = {
        "model": chat.model,
        "messages": chat.messages,
        "stream": chat.stream,
        "response_format": chat.response_format,
        "headers": {name.lower(): value for name, value in request.headers.items()},
    }
    state.recorded.append({**record, "received_at": time.time()})
    user = [m["content"] for m in chat.messages if m["role"] == "user"]
    step = state.take_step(user[-1] if user else "") or state.random_step()
    if step.hold:
        await state.released.wait()
    delay = HANG_S if step.hang else state.delay_s(step)
    streaming = chat.stream and step.status == 200
    if await state.pause(delay / 2 if streaming else delay) or step.hang:
        return error_response(503), True
    if step.status != 200:
        retry_after_s = state.config.retry_after_s if step.retry_after is None else step.retry_after
        headers = {"Retry-After": f"{retry_after_s:g}"} if step.status == 429 else None
        return error_response(step.status, headers=headers), True
    if step.break_stream and not chat.stream:
        _cut(request)
        return web.Response(), False
    reply = reply_to(chat, state.prompt_cache, step.text)
    if not chat.stream:
        return web.json_response(_completion(chat, reply)), True
    gap_s = delay / 2 / CHUNKS_PER_REPLY
    return await _stream(request, state, chat, reply, gap_s, step.break_stream)


def _completion(chat: Chat, reply: Reply) -> Json:
    message: Json = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message |= {"content": None, "tool_calls": list(reply.tool_calls)}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": reply.usage,
    }


def _pieces(text: str) -> list[str]:
    """The reply in about CHUNKS_PER_REPLY runs of whole words, concatenating back to `text`."""
    words = _PIECE.findall(text)
    size = max(1, -(-len(words) // CHUNKS_PER_REPLY))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)] or [text]


async def _stream(
    request: web.Request,
    state: MockState,
    chat: Chat,
    reply: Reply,
    gap_s: float,
    broken: bool,
) -> tuple[web.StreamResponse, bool]:
    """Send the reply as SSE chunks; with `broken`, cut the connection halfway through."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": "fp_mock",
    }

    def chunk(delta: Json, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**head, "choices": [choice]})

    await response.write(chunk({"role": "assistant", "content": ""}))
    deltas = list(call_deltas(reply.tool_calls)) or [{"content": piece} for piece in _pieces(reply.text)]
    for index, delta in enumerate(deltas):
        if (broken and index >= len(deltas) // 2) or await state.pause(gap_s):
            _cut(request)
            return response, False
        await response.write(chunk(delta))
    await response.write(chunk({}, reply.finish_reason))
    if chat.include_usage:
        await response.write(_sse({**head, "choices": [], "usage": reply.usage}))
    await response.write(b"data: [DONE]\n\n")
    return response, True


def _cut(request: web.Request) -> None:
    """Close the connection abruptly, as a provider's dropped stream would."""
    if request.transport is not None:
        request.transport.close()


async def _models(request: web.Request) -> web.Response:
    if _unauthorized(request, request.app[STATE].config):
        return error_response(401)
    data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "mock"} for m in MODELS]
    return web.json_response({"object": "list", "data": data})


async def _on_shutdown(app: web.Application) -> None:
    state = app[STATE]
    state.closing.set()
    state.release()


def build_app(config: MockConfig) -> web.Application:
    """The aiohttp application: `/v1` for clients, `/_mock` for tests to steer and inspect it."""
    app = web.Application()
    app[STATE] = MockState(config)
    mock_quota.install(app)
    app.on_shutdown.append(_on_shutdown)
    app.add_routes(
        [
            web.post("/v1/chat/completions", _chat_completions),
            web.get("/v1/models", _models),
            *admin_routes(),
        ]
    )
    return app


@contextlib.asynccontextmanager
async def serve(config: MockConfig, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run the mock on `host:port` (0 picks a free port), yielding its base URL ending in `/v1`.

    On exit, held and hung requests are answered with 503 and the server stops.
    """
    encoding_for(MODELS[0])  # load the tokenizer now, not inside the first request
    runner = web.AppRunner(
        build_app(config),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=1024).start()
        bound_port = runner.addresses[0][1]
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        yield f"http://{url_host}:{bound_port}/v1"
    finally:
        await runner.cleanup()


def run(config: MockConfig, host: str = "127.0.0.1", port: int = 8800) -> None:
    """Serve until SIGINT or SIGTERM, after printing `mock-llm listening on <base URL>`."""
    asyncio.run(_serve_until_signal(config, host, port))


async def _serve_until_signal(config: MockConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve(config, host, port) as url:
        print(f"mock-llm listening on {url}", flush=True)
        await stop.wait()
