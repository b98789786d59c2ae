"""The mock LLM's state and its admin API: configuration, scripted answers, records, stats.

Tests and the benchmark steer and inspect a running mock through `/_mock/*` (see
`admin.py` for the client); `server.py` serves the OpenAI API from this state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.devtools.mock_llm.cache import PromptCache

MAX_RECORDED = 20_000
Json = dict[str, Any]


@dataclass(frozen=True)
class MockConfig:
    """Latency and fault injection; set from the CLI, changeable with `PUT /_mock/config`."""

    latency_ms: float = 50.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    hang_rate: float = 0.0
    require_key: str | None = None
    request_quota_per_s: float = 0.0
    """At most this many requests in any one second (0: no quota); see app/devtools/mock_llm/quota.py."""
    concurrency_quota: int = 0
    """At most this many requests in flight (0: no quota)."""
    exhausted_models: tuple[str, ...] = ()
    """Models whose quota is used up: 429 `insufficient_quota`."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "require_key":
                if value is not None and not isinstance(value, str):
                    raise ValueError("require_key must be a string or null")
            elif field.name == "exhausted_models":
                if not isinstance(value, list | tuple) or not all(isinstance(m, str) for m in value):
                    raise ValueError("exhausted_models must be a list of model names")
                object.__setattr__(self, field.name, tuple(value))  # a list from JSON
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{field.name} must be a number >= 0")
            elif field.name.endswith("_rate") and value > 1:
                raise ValueError(f"{field.name} must be between 0 and 1")


@dataclass(frozen=True)
class ScriptStep:
    """One scripted answer, queued with `POST /_mock/script` and consumed by one request.

    A step with `match` is taken by the first request whose last user message contains it;
    steps without `match` go, in order, to requests that no matching step claimed.
    """

    status: int = 200
    retry_after: float | None = None
    latency_ms: float | None = None
    hang: bool = False
    hold: bool = False
    break_stream: bool = False
    match: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError("status must be an integer")
        if not 200 <= self.status <= 599:
            raise ValueError("status must be between 200 and 599")


PLAIN = ScriptStep()
"""The step of a request that nothing scripted: a normal answer."""


@dataclass
class MockStats:
    """Counts of what the mock was asked and how it answered."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    completed: int = 0
    errors: int = 0
    refused: int = 0
    """Requests answered 429 by a quota (app/devtools/mock_llm/quota.py), before the mock saw them."""


class MockState:
    """Everything one server instance keeps: config, script, records, stats, waiters."""

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.stats = MockStats()
        self.recorded: deque[Json] = deque(maxlen=MAX_RECORDED)
        self.script: list[ScriptStep] = []
        self.released = asyncio.Event()
        self.closing = asyncio.Event()
        self.rng = random.Random()
        self.prompt_cache = PromptCache()

    def take_step(self, text: str) -> ScriptStep | None:
        """Pop the step for a request whose last user message is `text`."""
        found = [i for i, s in enumerate(self.script) if s.match is not None and s.match in text]
        found += [i for i, s in enumerate(self.script) if s.match is None]
        return self.script.pop(found[0]) if found else None

    def random_step(self) -> ScriptStep:
        """A fault drawn from the configured rates (one roll, so the rates add up)."""
        roll, config = self.rng.random(), self.config
        if roll < config.hang_rate:
            return ScriptStep(hang=True)
        if roll < config.hang_rate + config.rate_limit_rate:
            return ScriptStep(status=429)
        if roll < config.hang_rate + config.rate_limit_rate + config.error_rate:
            return ScriptStep(status=500)
        return PLAIN

    def delay_s(self, step: ScriptStep) -> float:
        """The response delay: the step's own, else the configured latency with jitter."""
        if step.latency_ms is not None:
            return step.latency_ms / 1000
        jitter = self.config.jitter_ms
        spread = self.rng.uniform(-jitter, jitter) if jitter else 0.0
        return max(0.0, self.config.latency_ms + spread) / 1000

    def release(self) -> None:
        """Let every held request go on; later holds wait for the next release."""
        self.released.set()
        self.released = asyncio.Event()

    async def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early at shutdown; True if the server is closing."""
        if seconds > 0 and not self.closing.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.closing.wait()
        return self.closing.is_set()


STATE = web.AppKey("mock_llm_state", MockState)


async def _json_object(request: web.Request) -> Json:
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(request.app[STATE].config))


async def _put_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        state.config = dataclasses.replace(state.config, **await _json_object(request))
    except (TypeError, ValueError) as error:
        return _bad_request(str(error))
    return web.json_response(dataclasses.asdict(state.config))


async def _post_script(request: web.Request) -> web.Response:
    """Queue `{"steps": [step, ...]}` or a single step object after the steps already queued."""
    state = request.app[STATE]
    try:
        body = await _json_object(request)
        raw_steps = body.get("steps", [body])
        steps = [ScriptStep(**raw) for raw in raw_steps]
    except (TypeError, ValueError) as error:
        return _bad_request(f"invalid script: {error}")
    state.script.extend(steps)
    return web.json_response({"queued": len(state.script)})


async def _release(request: web.Request) -> web.Response:
    request.app[STATE].release()
    return web.json_response({"released": True})


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": list(request.app[STATE].recorded)})


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].recorded.clear()
    return web.json_response({"cleared": True})


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(request.app[STATE].stats))


async def _reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.stats = MockStats(in_flight=state.stats.in_flight, max_in_flight=state.stats.in_flight)
    state.recorded.clear()
    state.prompt_cache = PromptCache()
    state.script.clear()
    state.release()
    return web.json_response({"reset": True})


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=400)


def admin_routes() -> list[web.RouteDef]:
    """The `/_mock/*` routes."""
    return [
        web.get("/_mock/config", _get_config),
        web.put("/_mock/config", _put_config),
        web.post("/_mock/script", _post_script),
        web.post("/_mock/release", _release),
        web.get("/_mock/requests", _get_requests),
        web.delete("/_mock/requests", _clear_requests),
        web.get("/_mock/stats", _get_stats),
        web.post("/_mock/reset", _reset),
    ]
