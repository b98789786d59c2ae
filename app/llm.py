"""The LLM call: AsyncOpenAI streaming, one tenacity retry policy, deadline, fallback models.

openai's own retries are off; failures are translated into app.errors here, and only
`LLMTransient` is retried (exponential backoff with full jitter, never shorter than the
server's Retry-After), all attempts of one message bounded by ENRICHER_LLM_DEADLINE_S.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx2
import openai
import pydantic_core
from openai.types.chat import ChatCompletion
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_never,
)
from tenacity.wait import wait_base, wait_random_exponential

from app import metrics
from app.breaker import CircuitBreaker
from app.chunk_stream import ChunkStream
from app.errors import EnricherError, LLMAuthError, LLMError, LLMRejected, LLMTransient, LLMUnavailable
from app.ratelimit import RequestBudget
from app.schemas import Usage
from app.settings import Settings
from app.tokens import ChatMessage, count_chat

log = logging.getLogger(__name__)


class DeltaSink(Protocol):
    """Receives a streamed answer's text as it arrives."""

    async def send(self, delta: str) -> None:
        """One new piece of the answer."""

    def restart(self) -> None:
        """The attempt failed: the pieces sent so far are void (another attempt may follow)."""


ATTEMPTS_PER_FALLBACK_MODEL = 3
MAX_BACKOFF_S = 20.0
RETRIABLE_STATUS = frozenset({408, 409, 429})
AUTH_STATUS = frozenset({401, 403})
INVALID_REQUEST = "invalid_request_error"  # OpenAI's error type for a request at fault
HTTP_NOT_FOUND = 404  # the model does not exist here: the next fallback model may
BREAKER_FAILURES = 5  # failed attempts in a row that open the circuit breaker
BREAKER_PROBE_INTERVAL_S = 1.0
BREAKER_MAX_PROBE_INTERVAL_S = 15.0


@dataclass(frozen=True)
class Completion:
    """A finished answer of the LLM."""

    text: str
    model: str
    usage: Usage


@dataclass(frozen=True)
class CallOptions:
    """Per-template model settings."""

    temperature: float | None = None
    max_tokens: int | None = None


def retry_after_s(headers: httpx2.Headers) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or date)."""
    if value := headers.get("retry-after-ms"):
        try:
            return max(float(value) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # neither seconds nor a date: no hint
    return max(moment.timestamp() - time.time(), 0.0)


def translate(error: Exception) -> LLMError:
    """Map openai/httpx errors to the project's error tree."""
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        should_retry = error.response.headers.get("x-should-retry")
        detail = f"HTTP {status}: {error.message}"
        if should_retry == "true" or status in RETRIABLE_STATUS or status >= 500:
            return LLMTransient(detail, retry_after_s(error.response.headers))
        if status in AUTH_STATUS:
            return LLMAuthError(detail)
        return LLMRejected(detail, status)
    if isinstance(error, (openai.APITimeoutError, TimeoutError, httpx2.TimeoutException)):
        return LLMTransient("timed out")
    if isinstance(error, (openai.APIConnectionError, httpx2.TransportError)):
        return LLMTransient(f"connection failed: {type(error).__name__}")
    if isinstance(error, openai.APIError):  # reported inside a stream that had begun well
        detail = f"error from the API: {error.message}"
        if error.type == INVALID_REQUEST:
            return LLMRejected(detail)
        return LLMTransient(detail)
    return LLMTransient(f"unexpected {type(error).__name__}: {error}")


class WaitRetryAfter(wait_base):
    """Full-jitter exponential backoff, but never shorter than the server's Retry-After."""

    def __init__(self) -> None:
        self._backoff = wait_random_exponential(multiplier=0.25, max=MAX_BACKOFF_S)

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = self._backoff(retry_state)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        hint = error.retry_after_s if isinstance(error, LLMTransient) else None
        return max(wait, hint or 0.0)


class LLMClient:
    """One AsyncOpenAI client per process; `complete()` is the only way to call the LLM."""

    def __init__(self, settings: Settings) -> None:
        self._models = (settings.model, *settings.fallback_models)
        self._deadline_s = settings.llm_deadline_s
        self._attempt_timeout_s = settings.llm_timeout_s
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        self._budget = RequestBudget(settings.llm_rpm, settings.llm_tpm)
        self.breaker = CircuitBreaker(
            failures_to_open=BREAKER_FAILURES,
            probe_interval_s=BREAKER_PROBE_INTERVAL_S,
            max_probe_interval_s=BREAKER_MAX_PROBE_INTERVAL_S,
        )
        """Holds new messages while the LLM keeps failing; `Lanes` waits on `breaker.admit`."""
        pool = httpx2.Limits(
            max_connections=settings.max_in_flight + 8,
            max_keepalive_connections=settings.max_in_flight + 8,
        )
        timeout = httpx2.Timeout(settings.llm_timeout_s, connect=min(3.0, settings.llm_timeout_s))
        self._client = openai.AsyncOpenAI(
            api_key=settings.api_key_value,
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(limits=pool, timeout=timeout),
        )

    @property
    def model(self) -> str:
        """The main model."""
        return self._models[0]

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        options: CallOptions,
        sink: DeltaSink | None = None,
    ) -> Completion:
        """Answer the chat, retrying transient failures and falling back to other models.

        Raises LLMRejected (this input is refused) or LLMUnavailable (no answer within the
        deadline). Refused credentials are retried too, since no message is at fault; they
        open the breaker at once, and its reason makes the worker not ready until a call succeeds.
        """
        prompt_tokens = count_chat(messages, self.model) if self._budget.counts_tokens else 0
        failures: list[BaseException] = []
        try:
            async with asyncio.timeout(self._deadline_s):
                for index, model in enumerate(self._models):
                    is_last = index == len(self._models) - 1
                    retrying = AsyncRetrying(
                        retry=retry_if_exception(_is_retriable),
                        wait=WaitRetryAfter(),
                        stop=stop_never if is_last else stop_after_attempt(ATTEMPTS_PER_FALLBACK_MODEL),
                        reraise=True,
                        before_sleep=functools.partial(_note_retry, failures),
                    )
                    try:
                        return await retrying(self._attempt, model, messages, options, prompt_tokens, sink)
                    except (LLMTransient, LLMAuthError, LLMRejected) as error:
                        failures.append(error)
                        if is_last or (isinstance(error, LLMRejected) and error.status != HTTP_NOT_FOUND):
                            raise
                        log.warning("model failed; trying the next one", extra={"model": model})
        except TimeoutError:
            reason = f"no answer within {self._deadline_s:g} s"
            if failures:
                reason += f" (last error: {failures[-1]})"
            raise LLMUnavailable(reason) from None
        raise LLMUnavailable("no model left to try")

    async def _attempt(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: CallOptions,
        prompt_tokens: int,
        sink: DeltaSink | None,
    ) -> Completion:
        await self._budget.acquire(prompt_tokens + (options.max_tokens or 0))
        async with self._in_flight:
            metrics.LLM_IN_FLIGHT.inc()
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._attempt_timeout_s):
                    completion = await self._stream(model, messages, options, sink)
            except Exception as error:  # translated at this boundary, see translate()
                if sink is not None:
                    sink.restart()
                translated = error if isinstance(error, LLMError) else translate(error)
                metrics.LLM_CALLS.labels(model, type(translated).__name__).inc()
                if isinstance(translated, LLMRejected) and translated.status != HTTP_NOT_FOUND:
                    self.breaker.succeeded()  # the LLM answered; only this input is at fault
                else:  # an outage, refused credentials, or a model missing for every message
                    self.breaker.failed(str(translated), at_once=isinstance(translated, LLMAuthError))
                raise translated from error
            finally:
                metrics.LLM_IN_FLIGHT.dec()
        self.breaker.succeeded()
        metrics.LLM_CALLS.labels(model, "ok").inc()
        metrics.LLM_LATENCY.observe(time.monotonic() - started)
        metrics.LLM_TOKENS.labels("prompt").inc(completion.usage.prompt_tokens)
        metrics.LLM_TOKENS.labels("completion").inc(completion.usage.completion_tokens)
        return completion

    async def _stream(
        self,
        model: str,
        messages: Sequence[ChatMessage],
        options: CallOptions,
        sink: DeltaSink | None,
    ) -> Completion:
        body: dict[str, object] = {
            "model": model,
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        # The messages are plain JSON already: posting them as bytes skips the SDK's
        # per-request type walk and JSON encoding, which cost a fifth of the worker's CPU.
        stream = await self._client.post(
            "/chat/completions",
            cast_to=ChatCompletion,
            content=pydantic_core.to_json(body),
            stream=True,
            stream_cls=ChunkStream,
        )
        parts: list[str] = []
        usage = Usage()
        answered_by = model
        finished = False
        async with stream:
            async for chunk in stream:
                answered_by = chunk.model or answered_by
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    if delta := choice.delta.content:
                        parts.append(delta)
                        if sink is not None:
                            await sink.send(delta)
                    finished = finished or choice.finish_reason is not None
        if not finished:
            raise LLMTransient("stream ended without a finish reason")
        return Completion(text="".join(parts), model=answered_by, usage=usage)

    async def probe(self) -> str | None:
        """None when the API answers a model listing; otherwise a one-line reason."""
        try:
            async with asyncio.timeout(min(5.0, self._attempt_timeout_s)):
                await self._client.models.list()
        except Exception as error:  # readiness reports any failure as a reason
            return str(translate(error)) if not isinstance(error, LLMError) else str(error)
        return None

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()


def _is_retriable(error: BaseException) -> bool:
    return isinstance(error, EnricherError) and error.retriable


def _note_retry(failures: list[BaseException], retry_state: RetryCallState) -> None:
    """Log a failed attempt before its retry, and keep its error for the deadline's message."""
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    if error is not None:
        failures.append(error)
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.warning(
        "llm attempt failed; retrying",
        extra={
            "attempt": retry_state.attempt_number,
            "error": str(error),
            "retry_in_s": round(sleep, 3),
        },
    )
