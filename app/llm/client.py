"""The LLM call policy over an injected provider: streaming, retries, deadlines, fallback models.

The provider is an `AsyncOpenAI` client (`openai_client` builds the one of a process) with
openai's own retries off; failures are translated into app.errors at this boundary, and only
`LLMTransient` is retried (app/llm/errors.py: exponential backoff with full jitter, never shorter
than the server's Retry-After), all attempts of one message bounded by ENRICHER_LLM_DEADLINE_S,
and an attempt abandoned once it streams nothing for its model's learned first-token deadline
(`FirstTokenDeadline`). Pacing (app/llm/pacing.py), the breaker and model health
(app/llm/health.py) are told what each attempt meant; the worker reads them through `LLMHealth`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx2
import openai
import pydantic_core
from openai.types.chat import ChatCompletion
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_never

from app.errors import LLMAuthError, LLMError, LLMRejected, LLMTransient, LLMUnavailable
from app.llm.errors import HTTP_NOT_FOUND, WaitRetryAfter, is_retriable, note_retry, quota_reset_s, translate
from app.llm.health import CircuitBreaker, ModelHealth
from app.llm.pacing import Call, ConcurrencyLimit, RequestBudget
from app.llm.stream import ChunkStream, ToolCallParts
from app.llm.tool_calls import ToolCall, ToolUse
from app.observability import metrics
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
BREAKER_FAILURES = 5  # failed attempts in a row that open the circuit breaker
BREAKER_PROBE_INTERVAL_S = 1.0
BREAKER_MAX_PROBE_INTERVAL_S = 15.0
# The silence timer is moved only when it would ring within the deadline, and then to this many
# deadlines ahead: once per call or so instead of at every chunk, where moving it (a timer
# cancelled, one made) was 2% of the worker's CPU.
SILENCE_SLACK = 1.5
# The first-token deadline (FirstTokenDeadline).
FLOOR_S = 1.0
MULTIPLE = 4.0
MIN_SAMPLES = 10
WINDOW = 200


@dataclass(frozen=True)
class Completion:
    """A finished answer of the LLM."""

    text: str
    model: str
    usage: Usage
    tool_calls: tuple[ToolCall, ...] = ()
    """The tools this answer asks to call (then `text` is rarely more than a preamble)."""
    tools: tuple[ToolUse, ...] = ()
    """The tool calls made on the way to this answer (app/llm/tool_loop.py)."""


@dataclass(frozen=True)
class CallOptions:
    """What a call asks for besides its messages: the template's model settings, and the tools."""

    temperature: float | None = None
    max_tokens: int | None = None
    tools: Sequence[Mapping[str, object]] = ()
    """The OpenAI `tools` parameter: the tools the LLM may call."""
    tool_choice: Literal["auto", "none"] | None = None
    response_format: Mapping[str, object] | None = None
    """The OpenAI `response_format` parameter: a JSON answer, of a schema (a structured reply)."""


class LLMClient:
    """The call policy over one provider; `complete()` is the only way to call the LLM.

    It is an `LLMHealth` too: the lanes wait on `admit`, the health pages read `failing`.
    """

    def __init__(self, settings: Settings, provider: openai.AsyncOpenAI) -> None:
        """`provider` is owned from now on: `aclose` closes it."""
        self._models = (settings.model, *settings.fallback_models)
        self._health = ModelHealth(self._models)
        self._deadline_s = settings.llm_deadline_s
        self._attempt_timeout_s = settings.llm_timeout_s
        self._first_token = FirstTokenDeadline(settings.llm_timeout_s, settings.llm_first_token_timeout_s)
        self._limit = ConcurrencyLimit(settings.max_in_flight, adaptive=settings.llm_adaptive == "on")
        self._budget = RequestBudget(settings.llm_rpm, settings.llm_tpm)
        self._breaker = CircuitBreaker(
            failures_to_open=BREAKER_FAILURES,
            probe_interval_s=BREAKER_PROBE_INTERVAL_S,
            max_probe_interval_s=BREAKER_MAX_PROBE_INTERVAL_S,
        )
        self._provider = provider
        # The breaker's own method rather than a wrapper: the lanes await it once per batch.
        self.admit = self._breaker.admit
        """Return when a new call may start (see CircuitBreaker.admit)."""

    @property
    def concurrency_limit(self) -> int:
        """LLM calls this client lets be in flight now (see app/llm/pacing.py)."""
        return self._limit.limit

    @property
    def model(self) -> str:
        """The main model."""
        return self._models[0]

    @property
    def failing(self) -> str | None:
        """Why new calls are held (the breaker is open), or None."""
        return self._breaker.reason if self._breaker.is_open else None

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
                models = self._health.order()
                for index, model in enumerate(models):
                    is_last = index == len(models) - 1
                    retrying = AsyncRetrying(
                        retry=retry_if_exception(functools.partial(is_retriable, on_same_model=is_last)),
                        wait=WaitRetryAfter(),
                        stop=stop_never if is_last else stop_after_attempt(ATTEMPTS_PER_FALLBACK_MODEL),
                        reraise=True,
                        before_sleep=functools.partial(note_retry, failures),
                    )
                    attempt = functools.partial(self._attempt, model, messages, options, prompt_tokens)
                    try:
                        return await retrying(attempt, sink, failures)
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
        failures: Sequence[BaseException],
    ) -> Completion:
        await self._budget.acquire(prompt_tokens + (options.max_tokens or 0))
        call = await self._limit.acquire(retry=bool(failures))
        metrics.LLM_IN_FLIGHT.inc()
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                completion = await self._stream(model, messages, options, sink)
        except Exception as error:  # translated at this boundary, see translate()
            if sink is not None:
                sink.restart()
            translated = error if isinstance(error, LLMError) else translate(error)
            self._judge(model, translated, call, error)
            raise translated from error
        finally:
            metrics.LLM_IN_FLIGHT.dec()
            self._limit.release()
        self._limit.answered()
        self._health.answered(model)
        self._breaker.succeeded()
        metrics.LLM_CALLS.labels(model, "ok").inc()
        metrics.LLM_LATENCY.observe(time.monotonic() - call.started)
        return completion

    def _judge(self, model: str, error: LLMError, call: Call, cause: Exception) -> None:
        """Tell the limit, the model's health and the breaker what a failed attempt means."""
        metrics.LLM_CALLS.labels(model, type(error).__name__).inc()
        reset_s = (
            self._respect_quota(cause.response.headers) if isinstance(cause, openai.APIStatusError) else None
        )
        if isinstance(error, LLMTransient) and error.rate_limited:
            # "Slower", not an outage: fewer calls in flight, and the breaker stays closed.
            metrics.LLM_RATE_LIMITED.labels(model).inc()
            if not error.quota_exhausted:  # a plan's quota says nothing of how many calls fit
                self._limit.rate_limited(call, error.retry_after_s)
            if error.quota_exhausted or error.retry_after_s is None:
                self._health.failed(model, refused=error.quota_exhausted, resets_in_s=reset_s)
            self._breaker.succeeded()  # the provider answered
        elif isinstance(error, LLMRejected) and error.status != HTTP_NOT_FOUND:
            self._breaker.succeeded()  # the LLM answered; only this input is at fault
        else:  # an outage, refused credentials, or a model missing for every message
            self._health.failed(model, refused=isinstance(error, LLMRejected))
            self._breaker.failed(str(error), at_once=isinstance(error, LLMAuthError))

    def _respect_quota(self, headers: httpx2.Headers) -> float | None:
        """When the provider says it has no requests (or tokens) left, hold every new call until
        they reset; returns the seconds until then, or None."""
        reset_s = quota_reset_s(headers)
        if reset_s is not None:
            self._limit.hold_calls(reset_s)
        return reset_s

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
        if options.tools:
            body["tools"] = options.tools
        if options.tool_choice is not None:
            body["tool_choice"] = options.tool_choice
        if options.response_format is not None:
            body["response_format"] = options.response_format
        # The messages are plain JSON already: posting them as bytes skips the SDK's
        # per-request type walk and JSON encoding, which cost a fifth of the worker's CPU.
        parts: list[str] = []
        calls = ToolCallParts()
        usage = Usage()
        answered_by = model
        finished = False
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        first_token_at: float | None = None
        streamed = False  # any chunk, content or not: each moves the deadline on
        stop_following = None
        try:
            # Each token moves the deadline on: a call that goes silent this long (up to
            # SILENCE_SLACK times as long) is dropped.
            async with asyncio.timeout(self._first_token.deadline_s(model)) as silence:
                stop_following = self._first_token.follow_learning(model, silence, sent_at, lambda: streamed)
                stream = await self._provider.post(
                    "/chat/completions",
                    cast_to=ChatCompletion,
                    content=pydantic_core.to_json(body),
                    stream=True,
                    stream_cls=ChunkStream,
                )
                self._respect_quota(stream.response.headers)
                async with stream:
                    async for chunk in stream:
                        streamed = True
                        quiet_s = self._first_token.deadline_s(model)
                        if (silence.when() or 0.0) < loop.time() + quiet_s:
                            silence.reschedule(loop.time() + quiet_s * SILENCE_SLACK)
                        answered_by = chunk.model or answered_by
                        if chunk.usage is not None:
                            usage = chunk.usage
                        for choice in chunk.choices:
                            delta, fragments = choice.delta.content, choice.delta.tool_calls
                            # A tool call's first fragment is the answer's first token too.
                            if (delta or fragments) and first_token_at is None:
                                first_token_at = loop.time()
                                self._first_token.observe(model, first_token_at - sent_at)
                            if fragments:
                                calls.add(fragments)
                            if delta:
                                parts.append(delta)
                                if sink is not None:
                                    await sink.send(delta)
                            finished = finished or choice.finish_reason is not None
        except TimeoutError:
            what = "first token" if first_token_at is None else "next token"
            raise LLMTransient(f"no {what} within {self._first_token.deadline_s(model):g} s") from None
        finally:
            if stop_following is not None:
                stop_following()
        if not finished:
            raise LLMTransient("stream ended without a finish reason")
        return Completion(text="".join(parts), model=answered_by, usage=usage, tool_calls=calls.calls())

    async def probe(self) -> str | None:
        """None when the API answers a model listing; otherwise a one-line reason."""
        try:
            async with asyncio.timeout(min(5.0, self._attempt_timeout_s)):
                await self._provider.models.list()
        except Exception as error:  # readiness reports any failure as a reason
            return str(translate(error)) if not isinstance(error, LLMError) else str(error)
        return None

    async def aclose(self) -> None:
        """Close the provider's connection pool."""
        await self._provider.close()


def openai_client(settings: Settings) -> openai.AsyncOpenAI:
    """The one AsyncOpenAI client of a process: no retries of its own (tenacity is the policy), the
    attempt timeout, 3 s to connect, and a pool a little larger than the calls in flight.

    `LLMClient` takes the client ready-made, so whoever builds it picks the transport: the worker,
    the studio and `enricher prompts preview --send` build this one; tests may give it an
    `AsyncOpenAI` on an `httpx2.MockTransport`.
    """
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


class FirstTokenDeadline:
    """Recent times to first token per model, and the deadline they give: how long an LLM attempt
    may stream nothing before it is abandoned.

    A hung call (the provider took the request and sends nothing) would otherwise hold a slot for
    the whole attempt timeout. The deadline for the first token, and for each gap between tokens
    after it, is `MULTIPLE` times the recent p99 time to first token of that model, at least
    `FLOOR_S`; until `MIN_SAMPLES` calls of the model have been seen it is the attempt timeout
    itself (a model that thinks for 20 s before its first token is never cut off by a guess).
    `ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S` fixes it instead. An attempt that started before the
    deadline was learned gets the learned one as soon as there is one (`follow_learning`): a worker
    that starts with all its calls in flight would otherwise give each of them the whole attempt
    timeout, and one hung call of that first wave held its conversation for 30 s.
    """

    def __init__(self, attempt_timeout_s: float, fixed_s: float | None = None) -> None:
        self._attempt_timeout_s = attempt_timeout_s
        self._fixed_s = fixed_s
        self._seen: dict[str, deque[float]] = {}
        self._deadline_s: dict[str, float] = {}
        self._observed: dict[str, int] = {}

    def deadline_s(self, model: str) -> float:
        """Seconds an attempt of `model` may go without a token."""
        if self._fixed_s is not None:
            return self._fixed_s
        return self._deadline_s.get(model, self._attempt_timeout_s)

    def observe(self, model: str, seconds: float) -> None:
        """One call of `model` streamed its first token after `seconds`."""
        seen = self._seen.setdefault(model, deque(maxlen=WINDOW))
        seen.append(seconds)
        observed = self._observed[model] = self._observed.get(model, 0) + 1
        if observed >= MIN_SAMPLES and observed % 10 == 0:  # one sort of 200 floats per 10 calls
            ranked = sorted(seen)
            p99 = ranked[min(len(ranked) - 1, int(len(ranked) * 0.99))]
            self._deadline_s[model] = min(self._attempt_timeout_s, max(FLOOR_S, MULTIPLE * p99))

    def learned(self, model: str) -> bool:
        """Whether `model`'s deadline is its own (fixed, or learned from its calls)."""
        return self._fixed_s is not None or model in self._deadline_s

    def follow_learning(
        self, model: str, silence: asyncio.Timeout, sent_at: float, streaming: Callable[[], bool]
    ) -> Callable[[], None]:
        """For an attempt of `model` sent at `sent_at` (loop time) before its deadline was learned:
        look every `FLOOR_S` whether it is, and then move `silence` to `sent_at` plus the learned
        deadline if nothing has streamed yet (`streaming()` false; a chunk moves it on itself).
        Returns what stops the looking, for when the attempt ends.
        """
        if self.learned(model):
            return _nothing
        loop = asyncio.get_running_loop()

        def look() -> None:
            if streaming() or silence.expired():
                return  # each token moves the deadline on from now; an expired one is over
            if not self.learned(model):
                pending[0] = loop.call_later(FLOOR_S, look)
                return
            silence.reschedule(max(loop.time(), sent_at + self.deadline_s(model)))

        pending = [loop.call_later(FLOOR_S, look)]  # the one look to come
        return lambda: pending[0].cancel()


def _nothing() -> None:
    """Nothing to stop."""
