"""A provider on the seam: an `AsyncOpenAI` on an `httpx2.MockTransport`, answering from a script.

For tests of the LLM call policy (app/llm/client.py) without an HTTP server. Each chat request
is recorded and answered by the first scripted `Turn` that matches it, else by a plain answer
as the mock LLM gives it (same text, usage and error bodies), streamed in a few chunks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

from app.llm.client import CallOptions, LLMClient, openai_client
from app.settings import Settings
from app.tokens import ChatMessage, ToolCallEntry
from devstack.mock_llm.cache import PromptCache
from devstack.mock_llm.chat import Reply, parse_chat, reply_to
from devstack.mock_llm.errors import ERRORS, QUOTA_USED_UP
from devstack.mock_llm.tools import call_deltas

BASE_URL = "http://provider.test/v1"
API_KEY = "sk-test"
CHUNKS_PER_REPLY = 4


@dataclass(frozen=True)
class Turn:
    """One scripted answer, taken by the first request whose last user message holds `match`;
    turns without it go, in order, to the requests no matching turn claimed."""

    status: int = 200
    retry_after_s: float | None = None
    quota_used_up: bool = False
    """A 429 saying the plan's quota is spent (`insufficient_quota`), as OpenAI words it."""
    first_token_after_s: float = 0.0
    silent: bool = False
    """Headers sent, then nothing: the call hangs until the policy drops it."""
    match: str | None = None
    calls: tuple[tuple[str, str], ...] = ()
    """Tools (name, arguments as JSON text) the answer calls, whatever the request declares."""
    preamble: str = ""
    """With `calls`: the text streamed before them."""


@dataclass(frozen=True)
class Received:
    """A chat request as the provider saw it."""

    model: str
    text: str
    """The last user message."""
    body: dict[str, Any]
    at: float
    """The event loop's time on arrival."""


@dataclass
class ScriptedProvider:
    """Answers chat requests from `script`, then as `otherwise`; keeps every request in `received`."""

    script: list[Turn] = field(default_factory=list)
    otherwise: Turn = Turn()
    """The answer to a request no scripted turn is left for."""
    received: list[Received] = field(default_factory=list)
    exhausted: set[str] = field(default_factory=set)
    """Models answering every request with a spent quota."""
    _cache: PromptCache = field(default_factory=PromptCache)

    def client(self) -> openai.AsyncOpenAI:
        """An AsyncOpenAI on this provider, with openai's own retries off as in the worker."""
        transport = httpx2.MockTransport(self._handle)
        return openai.AsyncOpenAI(
            base_url=BASE_URL,
            api_key=API_KEY,
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )

    def answered(self, text: str) -> list[Received]:
        """The requests whose last user message was `text`, in order of arrival."""
        return [request for request in self.received if request.text == text]

    async def _handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/models"):
            return httpx2.Response(200, json={"object": "list", "data": []})
        body = json.loads(request.content)
        chat = parse_chat(body)
        text = next((m["content"] for m in reversed(chat.messages) if m["role"] == "user"), "")
        self.received.append(Received(chat.model, text, body, asyncio.get_running_loop().time()))
        turn = self._take(text)
        if chat.model in self.exhausted or turn.quota_used_up:
            return _error(429, QUOTA_USED_UP)
        if turn.status != 200:
            headers = {} if turn.retry_after_s is None else {"retry-after": f"{turn.retry_after_s:g}"}
            return _error(turn.status, ERRORS[turn.status], headers)
        reply = reply_to(chat, self._cache) if not turn.calls else _calling(turn)
        stream = _silence() if turn.silent else _chunks(chat.model, reply, turn.first_token_after_s)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=stream)

    def _take(self, text: str) -> Turn:
        """As the mock LLM does: a turn matching `text` first, else the first without `match`."""
        found = [i for i, turn in enumerate(self.script) if turn.match is not None and turn.match in text]
        found += [i for i, turn in enumerate(self.script) if turn.match is None]
        return self.script.pop(found[0]) if found else self.otherwise


def _calling(turn: Turn) -> Reply:
    """The answer of a turn that calls tools."""
    calls = tuple(
        ToolCallEntry(id=f"call_{n}", type="function", function={"name": name, "arguments": arguments})
        for n, (name, arguments) in enumerate(turn.calls)
    )
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    return Reply(turn.preamble, "tool_calls", usage, calls)


def _error(
    status: int, kind: tuple[str, str, str], headers: Mapping[str, str] | None = None
) -> httpx2.Response:
    error_type, code, message = kind
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return httpx2.Response(status, json=body, headers=headers)


async def _silence() -> AsyncIterator[bytes]:
    await asyncio.Event().wait()  # never set: the call is dropped by its deadline
    yield b""


async def _chunks(model: str, reply: Reply, first_token_after_s: float) -> AsyncIterator[bytes]:
    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps({"model": model, **payload}).encode() + b"\n\n"

    words = reply.text.split(" ") if reply.text else []
    size = max(1, -(-len(words) // CHUNKS_PER_REPLY))
    pieces = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    await asyncio.sleep(first_token_after_s)  # the provider thinking before its first token
    for index, piece in enumerate(pieces):
        yield event({"choices": [{"delta": {"content": piece if index == 0 else f" {piece}"}}]})
    for delta in call_deltas(reply.tool_calls):
        yield event({"choices": [{"delta": delta}]})
    yield event({"choices": [{"delta": {}, "finish_reason": reply.finish_reason}]})
    yield event({"choices": [], "usage": reply.usage})
    yield b"data: [DONE]\n\n"


def chat(text: str) -> list[ChatMessage]:
    """A support agent's system prompt and the customer's `text`."""
    return [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": text}]


async def answer_all(client: LLMClient, count: int, prefix: str) -> None:
    """`count` different chats answered at once."""
    await asyncio.gather(*(client.complete(chat(f"{prefix} {n}"), CallOptions()) for n in range(count)))


def llm_settings(**env: str) -> Settings:
    """The policy's settings for a test: a 5 s deadline, 2 s attempts, unless `env` says otherwise."""
    defaults = {
        "OPENAI_BASE_URL": BASE_URL,
        "OPENAI_API_KEY": API_KEY,
        "ENRICHER_LLM_DEADLINE_S": "5",
        "ENRICHER_LLM_TIMEOUT_S": "2",
    }
    return Settings.model_validate(defaults | env)


def policy_on(provider: ScriptedProvider, **env: str) -> LLMClient:
    """An LLMClient over `provider`, with `llm_settings(**env)`."""
    return LLMClient(llm_settings(**env), provider.client())


def policy_at(url: str, **env: str) -> LLMClient:
    """An LLMClient over HTTP to the mock LLM at `url`, on the worker's own provider client."""
    settings = llm_settings(OPENAI_BASE_URL=url, **env)
    return LLMClient(settings, openai_client(settings))
