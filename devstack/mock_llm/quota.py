"""Provider limits for the mock LLM, answered as a real provider does: 429 and rate-limit headers.

Three limits, each off until set in MockConfig: a request quota (at most
`request_quota_per_s` requests in any one second), a concurrency quota (at most
`concurrency_quota` requests in flight), and models whose quota is used up
(`exhausted_models`: 429 `insufficient_quota`, no Retry-After, as OpenAI words it).
Every chat response carries `x-ratelimit-*-requests` headers while a request quota is set.
"""

from __future__ import annotations

import json
import time
from collections import deque

from aiohttp import web
from aiohttp.typedefs import Handler

from devstack.mock_llm.errors import QUOTA_USED_UP, error_response
from devstack.mock_llm.state import STATE, MockState

CHAT_PATH = "/v1/chat/completions"
WINDOW_S = 1.0


class RequestWindow:
    """The requests admitted in the last WINDOW_S seconds."""

    def __init__(self) -> None:
        self._admitted: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._admitted and self._admitted[0] <= now - WINDOW_S:
            self._admitted.popleft()

    def admit(self, quota: int, now: float) -> float | None:
        """None when a request is admitted now; otherwise the seconds until one would be."""
        self._trim(now)
        if len(self._admitted) >= quota:
            return self.reset_s(now)
        self._admitted.append(now)
        return None

    def remaining(self, quota: int, now: float) -> int:
        """Requests the window admits now."""
        self._trim(now)
        return max(0, quota - len(self._admitted))

    def reset_s(self, now: float) -> float:
        """Seconds until the oldest admitted request leaves the window."""
        return max(0.0, self._admitted[0] + WINDOW_S - now) if self._admitted else 0.0


WINDOW = web.AppKey("mock_llm_request_window", RequestWindow)


def _too_many(message: str, retry_after_s: float) -> web.Response:
    headers = {
        "retry-after-ms": f"{retry_after_s * 1000:.0f}",
        "retry-after": f"{max(1, round(retry_after_s))}",
    }
    return error_response(429, message, headers)


async def _refusal(request: web.Request, state: MockState) -> web.Response | None:
    config = state.config
    if config.exhausted_models:
        try:
            model = json.loads(await request.read()).get("model")
        except (ValueError, AttributeError):
            model = None  # the handler answers a malformed body
        if model in config.exhausted_models:
            return error_response(429, kind=QUOTA_USED_UP)
    if config.concurrency_quota and state.stats.in_flight >= config.concurrency_quota:
        return _too_many("Too many concurrent requests (mock).", config.retry_after_s)
    if config.request_quota_per_s:
        wait_s = request.app[WINDOW].admit(int(config.request_quota_per_s), time.monotonic())
        if wait_s is not None:
            return _too_many("Rate limit reached for requests (mock).", wait_s)
    return None


@web.middleware
async def enforce_quotas(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a chat request beyond a configured limit before the mock answers it."""
    if request.path != CHAT_PATH:
        return await handler(request)
    state = request.app[STATE]
    refusal = await _refusal(request, state)
    if refusal is None:
        return await handler(request)
    state.stats.refused += 1
    return refusal


async def add_ratelimit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`x-ratelimit-limit/remaining/reset-requests` on every chat response, as providers send."""
    quota = int(request.app[STATE].config.request_quota_per_s)
    if request.path != CHAT_PATH or not quota:
        return
    window, now = request.app[WINDOW], time.monotonic()
    response.headers["x-ratelimit-limit-requests"] = str(quota)
    response.headers["x-ratelimit-remaining-requests"] = str(window.remaining(quota, now))
    response.headers["x-ratelimit-reset-requests"] = f"{window.reset_s(now) * 1000:.0f}ms"


def install(app: web.Application) -> None:
    """Put the quotas on the mock's application."""
    app[WINDOW] = RequestWindow()
    app.middlewares.append(enforce_quotas)
    app.on_response_prepare.append(add_ratelimit_headers)
