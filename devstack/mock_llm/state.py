"""The mock LLM's state: its configuration, scripted answers, recorded requests and stats.

`server.py` answers the OpenAI API from it; tests and the benchmark change and read it
through the admin API (`admin_api.py`, with `admin.py` its client).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from devstack.mock_llm.cache import PromptCache

MAX_RECORDED = 20_000
Json = dict[str, Any]


# Strict: the admin API takes JSON, where `true` or `"5"` for a number is a mistake to report.
_INPUT = ConfigDict(frozen=True, extra="forbid", strict=True)
Amount = Annotated[float, Field(ge=0)]
Rate = Annotated[float, Field(ge=0, le=1)]


class MockConfig(BaseModel):
    """Latency and fault injection; set from the CLI, changeable with `PUT /_mock/config`."""

    model_config = _INPUT

    latency_ms: Amount = 50.0
    jitter_ms: Amount = 0.0
    error_rate: Rate = 0.0
    rate_limit_rate: Rate = 0.0
    retry_after_s: Amount = 1.0
    hang_rate: Rate = 0.0
    require_key: str | None = None
    request_quota_per_s: Amount = 0.0
    """At most this many requests in any one second (0: no quota); see devstack/mock_llm/quota.py."""
    concurrency_quota: Annotated[int, Field(ge=0)] = 0
    """At most this many requests in flight (0: no quota)."""
    exhausted_models: tuple[str, ...] = Field((), strict=False)  # JSON sends a list
    """Models whose quota is used up: 429 `insufficient_quota`."""


class ScriptStep(BaseModel):
    """One scripted answer, queued with `POST /_mock/script` and consumed by one request.

    A step with `match` is taken by the first request whose last user message contains it;
    steps without `match` go, in order, to requests that no matching step claimed.
    """

    model_config = _INPUT

    status: Annotated[int, Field(ge=200, le=599)] = 200
    retry_after: Amount | None = None
    latency_ms: Amount | None = None
    hang: bool = False
    hold: bool = False
    break_stream: bool = False
    match: str | None = None
    text: str | None = None
    """The answer's text instead of the composed one; `{system}` in it is the prompt's system part
    (an answer that leaks its instructions)."""


class Script(BaseModel):
    """The body of `POST /_mock/script`: steps to queue."""

    model_config = _INPUT

    steps: list[ScriptStep]


PLAIN = ScriptStep()
"""The step of a request that nothing scripted: a normal answer."""
HANG, RATE_LIMITED, SERVER_ERROR = ScriptStep(hang=True), ScriptStep(status=429), ScriptStep(status=500)


@dataclass
class MockStats:
    """Counts of what the mock was asked and how it answered."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    completed: int = 0
    errors: int = 0
    refused: int = 0
    """Requests answered 429 by a quota (devstack/mock_llm/quota.py), before the mock saw them."""


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
            return HANG
        if roll < config.hang_rate + config.rate_limit_rate:
            return RATE_LIMITED
        if roll < config.hang_rate + config.rate_limit_rate + config.error_rate:
            return SERVER_ERROR
        return PLAIN

    def delay_s(self, step: ScriptStep) -> float:
        """The response delay: the step's own, else the configured latency with jitter."""
        if step.latency_ms is not None:
            return step.latency_ms / 1000
        jitter = self.config.jitter_ms
        spread = self.rng.uniform(-jitter, jitter) if jitter else 0.0
        return max(0.0, self.config.latency_ms + spread) / 1000

    def reset(self) -> None:
        """Forget script, records, stats and cached prefixes; release held requests."""
        self.stats = MockStats(in_flight=self.stats.in_flight, max_in_flight=self.stats.in_flight)
        self.recorded.clear()
        self.prompt_cache = PromptCache()
        self.script.clear()
        self.release()

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
