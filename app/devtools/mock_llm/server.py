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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web

from app.devtools.mock_llm import quota as mock_quota
from app.devtools.mock_llm.errors import error_response
from app.devtools.mock_llm.state import STATE, Json, MockConfig, MockState, admin_routes
from app.tokens import ChatMessage, count_chat, encoding_for

MODELS = ("gpt-4o-mini", "gpt-4o", "mock-small")
CHUNKS_PER_REPLY = 6
HANG_S = 3600.0
SHUTDOWN_TIMEOUT_S = 5.0
CLOSING_SENTENCE = "Let me know if there is anything else I can help with."
_SYSTEM_ROLES = ("system", "developer")
_NAME_LINE = re.compile(r"^\s*(?:[-*]\s*)?name:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_CUSTOMER_TAG = re.compile(r"<customer_message>(.*?)</customer_message>", re.DOTALL)
_PIECE = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class _Chat:
    model: str
    messages: list[ChatMessage]
    stream: bool
    include_usage: bool
    max_tokens: int | None


def compose_reply(messages: Sequence[ChatMessage]) -> str:
    """The deterministic reply to a chat request, built so tests can see the prompt was used.

    Greets by the first `name:` line of a system message, quotes (whitespace collapsed, at most
    60 characters) the last user message or its `<customer_message>` part, and counts the user
    and assistant messages before it.
    """
    users = [i for i, message in enumerate(messages) if message["role"] == "user"]
    last = users[-1] if users else len(messages)
    latest = messages[last]["content"] if users else ""
    if tagged := _CUSTOMER_TAG.search(latest):
        latest = tagged.group(1)
    quote = " ".join(latest.split())[:60]
    earlier = sum(1 for message in messages[:last] if message["role"] in ("user", "assistant"))
    history = f"{earlier} earlier message{'' if earlier == 1 else 's'}" if earlier else "no earlier messages"
    name = _customer_name(messages)
    return (
        f'{f"Hi {name}," if name else "Hi there,"} thanks for your message "{quote}". '
        f"I can see {history} in this conversation. {CLOSING_SENTENCE}"
    )


def _customer_name(messages: Sequence[ChatMessage]) -> str | None:
    for message in messages:
        if message["role"] in _SYSTEM_ROLES and (found := _NAME_LINE.search(message["content"])):
            return found.group(1)
    return None


def _parse_chat(body: object) -> _Chat:
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    model, raw_messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise ValueError("you must provide a model parameter")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise ValueError("'messages' must be a non-empty array")
    options = body.get("stream_options")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return _Chat(
        model=model,
        messages=[_parse_message(raw) for raw in raw_messages],
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        max_tokens=limit if isinstance(limit, int) and limit > 0 else None,
    )


def _parse_message(raw: object) -> ChatMessage:
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise ValueError("each message must be an object with a 'role'")
    content = raw.get("content")
    if isinstance(content, list):  # content parts: only the text ones count
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return {"role": raw["role"], "content": content if isinstance(content, str) else ""}


def _reply(chat: _Chat) -> tuple[str, str, Json]:
    """Reply text cut to `max_tokens`, its finish reason, and its usage."""
    encoding = encoding_for(chat.model)
    text = compose_reply(chat.messages)
    tokens = encoding.encode(text, disallowed_special=())
    finish = "stop"
    if chat.max_tokens is not None and len(tokens) > chat.max_tokens:
        tokens, finish = tokens[: chat.max_tokens], "length"
        text = encoding.decode(tokens)
    prompt = count_chat(chat.messages, chat.model)
    usage = {"prompt_tokens": prompt, "completion_tokens": len(tokens)}
    return text, finish, {**usage, "total_tokens": prompt + len(tokens)}


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
        chat = _parse_chat(await request.json())
    except ValueError as error:
        return error_response(400, str(error)), True
    record = {"model": chat.model, "messages": chat.messages, "stream": chat.stream}
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
    text, finish, usage = _reply(chat)
    usage |= state.prompt_cache.details(chat.model, chat.messages)
    if not chat.stream:
        return web.json_response(_completion(chat, text, finish, usage)), True
    gap_s = delay / 2 / CHUNKS_PER_REPLY
    return await _stream(request, state, chat, (text, finish, usage), gap_s, step.break_stream)


def _completion(chat: _Chat, text: str, finish: str, usage: Json) -> Json:
    message = {"role": "assistant", "content": text, "refusal": None}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
    }


def _pieces(text: str) -> list[str]:
    """The reply in about CHUNKS_PER_REPLY runs of whole words, concatenating back to `text`."""
    words = _PIECE.findall(text)
    size = max(1, -(-len(words) // CHUNKS_PER_REPLY))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)] or [text]


async def _stream(
    request: web.Request,
    state: MockState,
    chat: _Chat,
    reply: tuple[str, str, Json],
    gap_s: float,
    broken: bool,
) -> tuple[web.StreamResponse, bool]:
    """Send the reply as SSE chunks; with `broken`, cut the connection halfway through."""
    text, finish, usage = reply
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
    pieces = _pieces(text)
    for index, piece in enumerate(pieces):
        if (broken and index >= len(pieces) // 2) or await state.pause(gap_s):
            _cut(request)
            return response, False
        await response.write(chunk({"content": piece}))
    await response.write(chunk({}, finish))
    if chat.include_usage:
        await response.write(_sse({**head, "choices": [], "usage": usage}))
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
