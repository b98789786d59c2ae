"""The provider: the OpenAI-compatible API behind the LLM policy, as one `AsyncOpenAI` client.

`LLMClient` takes the client ready-made, so whoever builds it picks the transport: the worker,
the studio and `enricher prompts preview --send` build this one; tests may give it an
`AsyncOpenAI` on an `httpx2.MockTransport`.
"""

from __future__ import annotations

import httpx2
import openai

from app.settings import Settings


def openai_client(settings: Settings) -> openai.AsyncOpenAI:
    """The one AsyncOpenAI client of a process: no retries of its own (tenacity is the policy), the
    attempt timeout, 3 s to connect, and a pool a little larger than the calls in flight."""
    pool = httpx2.Limits(
        max_connections=settings.max_in_flight + 8,
        max_keepalive_connections=settings.max_in_flight + 8,
    )
    timeout = httpx2.Timeout(settings.llm_timeout_s, connect=min(3.0, settings.llm_timeout_s))
    return openai.AsyncOpenAI(
        api_key=settings.api_key_value,
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=timeout,
        default_headers=settings.llm_header_values,
        http_client=openai.DefaultAioHttpClient(limits=pool, timeout=timeout),
    )
