"""What a provider's rate-limit headers say: durations, and when requests are left again."""

from __future__ import annotations

import httpx2
import openai
import pytest

from app.errors import LLMTransient
from app.llm.errors import duration_s, quota_reset_s, translate


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("", None),
        ("soon", None),
        ("5", None),
    ],
)
def test_ratelimit_reset_durations(text: str, seconds: float | None) -> None:
    assert duration_s(text) == seconds


def test_quota_reset_only_when_nothing_is_left() -> None:
    assert (
        quota_reset_s(
            httpx2.Headers({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"})
        )
        is None
    )
    empty = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "250ms"}
    assert quota_reset_s(httpx2.Headers(empty)) == 0.25
    both = empty | {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "2s"}
    assert quota_reset_s(httpx2.Headers(both)) == 2.0


def _429(code: str, headers: dict[str, str]) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    response = httpx2.Response(429, headers=headers, request=request)
    body = {"message": "no", "type": code, "code": code}
    return openai.RateLimitError("no", response=response, body=body)


def test_a_429_is_rate_limited_and_insufficient_quota_is_exhausted() -> None:
    limited = translate(_429("rate_limit_exceeded", {"retry-after": "2"}))
    exhausted = translate(_429("insufficient_quota", {}))
    assert isinstance(limited, LLMTransient)
    assert isinstance(exhausted, LLMTransient)
    assert (limited.rate_limited, limited.quota_exhausted, limited.retry_after_s) == (True, False, 2.0)
    assert (exhausted.rate_limited, exhausted.quota_exhausted, exhausted.retry_after_s) == (True, True, None)
