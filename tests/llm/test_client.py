"""LLMClient's call policy over a scripted provider on the seam (no HTTP server): answers, retries,
fallback models, deadlines, the breaker, cooled models and the learned first-token deadline.

What only a socket shows (a cut stream, a hung connection, the key sent) is in test_transport.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.errors import LLMRejected, LLMUnavailable
from app.llm import client as llm_client
from app.llm import health as llm_health
from app.llm.client import ATTEMPTS_PER_FALLBACK_MODEL, CallOptions, Completion, LLMClient
from app.polling import NotYet, poll
from app.tokens import ChatMessage, count_chat, count_text
from tests.helpers.provider import ScriptedProvider, Turn, answer_all, chat, policy_on
from tests.helpers.sinks import Collected

MODEL = "gpt-4o-mini"
FALLBACK = "gpt-4o"
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a support agent.\n- name: Ada"},
    {"role": "user", "content": "Where is my order?"},
]
# Long enough that a call the policy cut short of it was cut by something else.
LONG_ATTEMPT = {"ENRICHER_LLM_TIMEOUT_S": "10", "ENRICHER_LLM_DEADLINE_S": "30"}


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
async def client(provider: ScriptedProvider) -> AsyncIterator[LLMClient]:
    llm = policy_on(provider)
    yield llm
    await llm.aclose()


async def test_a_call_returns_the_text_with_usage_and_streams_it_in_deltas(
    client: LLMClient, provider: ScriptedProvider
) -> None:
    sink = Collected()
    completion = await client.complete(MESSAGES, CallOptions(temperature=0.2), sink)

    assert completion.text.startswith('Hi Ada, thanks for your message "Where is my order?".')
    assert completion.model == MODEL
    assert len(sink.deltas) > 1
    assert "".join(sink.deltas) == completion.text
    usage = completion.usage
    assert usage.prompt_tokens == count_chat(MESSAGES, MODEL)
    assert usage.completion_tokens == count_text(completion.text, MODEL)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    (request,) = provider.received
    assert request.body == {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
    }
    assert client.failing is None


async def test_max_tokens_reaches_the_request_and_cuts_the_answer(
    client: LLMClient, provider: ScriptedProvider
) -> None:
    completion = await client.complete(MESSAGES, CallOptions(max_tokens=3))

    assert provider.received[0].body["max_tokens"] == 3
    assert completion.usage.completion_tokens == 3
    assert count_text(completion.text, MODEL) == 3


async def test_two_server_errors_then_success_give_one_answer_after_three_requests(
    client: LLMClient, provider: ScriptedProvider
) -> None:
    provider.script = [Turn(status=500), Turn(status=500)]

    completion = await client.complete(MESSAGES, CallOptions())

    assert "Where is my order?" in completion.text
    assert len(provider.received) == 3


async def test_a_rate_limit_waits_at_least_its_retry_after_then_answers(
    client: LLMClient, provider: ScriptedProvider
) -> None:
    provider.script = [Turn(status=429, retry_after_s=1)]

    completion = await client.complete(MESSAGES, CallOptions())

    assert completion.text
    refused, answered = provider.received
    assert answered.at - refused.at >= 1.0


async def test_a_rejected_request_is_not_retried_nor_sent_to_a_fallback_model(
    provider: ScriptedProvider,
) -> None:
    client = policy_on(provider, ENRICHER_FALLBACK_MODELS=FALLBACK)
    provider.script = [Turn(status=400)]

    with pytest.raises(LLMRejected) as caught:
        await client.complete(MESSAGES, CallOptions())
    await client.aclose()

    assert caught.value.status == 400
    assert [request.model for request in provider.received] == [MODEL]


async def test_a_model_that_does_not_exist_falls_back_to_the_next_model(provider: ScriptedProvider) -> None:
    client = policy_on(provider, ENRICHER_FALLBACK_MODELS=f" {FALLBACK} , mock-small")
    provider.script = [Turn(status=404)]

    completion = await client.complete(MESSAGES, CallOptions())
    await client.aclose()

    assert client.model == MODEL
    assert completion.model == FALLBACK
    assert "Where is my order?" in completion.text
    assert [request.model for request in provider.received] == [MODEL, FALLBACK]


async def test_the_deadline_names_the_last_error_of_a_single_model(provider: ScriptedProvider) -> None:
    provider.otherwise = Turn(status=500)
    client = policy_on(provider, ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1")

    with pytest.raises(LLMUnavailable) as caught:
        await client.complete(MESSAGES, CallOptions())
    await client.aclose()

    assert str(caught.value).startswith("no answer within 1 s (last error: HTTP 500:")


async def test_a_model_that_keeps_failing_is_given_up_for_the_fallback_until_the_deadline(
    provider: ScriptedProvider,
) -> None:
    provider.otherwise = Turn(status=500)
    client = policy_on(
        provider, ENRICHER_LLM_DEADLINE_S="2", ENRICHER_LLM_TIMEOUT_S="1", ENRICHER_FALLBACK_MODELS=FALLBACK
    )

    with pytest.raises(LLMUnavailable) as caught:
        await client.complete(MESSAGES, CallOptions())
    await client.aclose()

    assert str(caught.value).startswith("no answer within 2 s (last error: HTTP 500:")
    models = [request.model for request in provider.received]
    assert models[:ATTEMPTS_PER_FALLBACK_MODEL] == [MODEL] * ATTEMPTS_PER_FALLBACK_MODEL
    retries = models[ATTEMPTS_PER_FALLBACK_MODEL:]
    assert retries
    assert retries == [FALLBACK] * len(retries)


async def test_refused_credentials_hold_new_calls_until_a_call_succeeds(provider: ScriptedProvider) -> None:
    provider.otherwise = Turn(status=401)
    client = policy_on(provider, ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1")

    with pytest.raises(LLMUnavailable):
        await client.complete(MESSAGES, CallOptions())
    refused = client.failing
    attempts = len(provider.received)
    provider.otherwise = Turn()
    completion = await client.complete(MESSAGES, CallOptions())
    await client.aclose()

    assert refused is not None
    assert refused.startswith("HTTP 401:")
    assert attempts >= 2  # retried, since no message is at fault
    assert completion.text
    assert client.failing is None


async def test_a_429_storm_never_opens_the_breaker_but_an_outage_does(provider: ScriptedProvider) -> None:
    provider.otherwise = Turn(status=429, retry_after_s=0.05)
    client = policy_on(provider, ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1")

    storm = [client.complete(chat(f"hello {n}"), CallOptions()) for n in range(5)]
    outcomes = await asyncio.gather(*storm, return_exceptions=True)
    throttled = len(provider.received)
    storm_failing = client.failing
    provider.otherwise = Turn(status=500)
    outage = [client.complete(chat(f"hello again {n}"), CallOptions()) for n in range(5)]
    await asyncio.gather(*outage, return_exceptions=True)
    outage_failing = client.failing
    await client.aclose()

    assert all(isinstance(outcome, LLMUnavailable) for outcome in outcomes)
    assert throttled >= 5  # more 429s in a row than it takes failures to open the breaker
    assert storm_failing is None
    assert outage_failing is not None
    assert outage_failing.startswith("HTTP 500:")


async def test_new_calls_wait_at_admit_while_the_llm_fails_and_go_once_a_call_succeeds(
    provider: ScriptedProvider,
) -> None:
    provider.otherwise = Turn(status=500)
    client = policy_on(provider, ENRICHER_LLM_DEADLINE_S="1", ENRICHER_LLM_TIMEOUT_S="1")
    outage = [client.complete(chat(f"outage {n}"), CallOptions()) for n in range(5)]
    await asyncio.gather(*outage, return_exceptions=True)

    waiting = asyncio.create_task(client.admit())
    for _ in range(3):
        await asyncio.sleep(0)  # let it reach the breaker's wait for the next probe
    held = not waiting.done()
    provider.otherwise = Turn()
    await client.complete(chat("answered again"), CallOptions())  # a call running while it opened
    async with asyncio.timeout(5):
        await waiting
    await client.aclose()

    assert held
    assert client.failing is None


async def test_a_retry_after_on_one_call_delays_the_other_calls_next_attempts(
    client: LLMClient, provider: ScriptedProvider
) -> None:
    provider.script = [Turn(status=429, retry_after_s=2, match="first"), Turn(status=500, match="second")]

    first = asyncio.create_task(client.complete(chat("first"), CallOptions()))

    async def first_refused() -> None:
        if not provider.answered("first"):
            raise NotYet("the first call has not reached the provider")

    await poll(first_refused, timeout_s=5, interval_s=0.01)
    await client.complete(chat("second"), CallOptions())
    await first

    (refused, _), (failed, retried) = provider.answered("first"), provider.answered("second")
    assert failed.at - refused.at < 2.0  # its own first attempt was not held
    assert retried.at - refused.at >= 2.0  # its retry waited out the other call's Retry-After


async def test_an_exhausted_main_model_is_cooled_down_and_used_again_after(
    monkeypatch: pytest.MonkeyPatch, provider: ScriptedProvider
) -> None:
    monkeypatch.setattr(llm_health, "FIRST_COOLDOWN_S", 0.5)
    provider.exhausted = {MODEL}
    client = policy_on(provider, ENRICHER_FALLBACK_MODELS=FALLBACK)

    answered_by = [(await client.complete(chat(f"m{n}"), CallOptions())).model for n in range(10)]
    asked = [request.model for request in provider.received]
    provider.exhausted = set()

    async def main_model_again() -> Completion:
        completion = await client.complete(chat("after the cool-down"), CallOptions())
        if completion.model != MODEL:
            raise NotYet("the main model is still cooling down")
        return completion

    again = await poll(main_model_again, timeout_s=5, interval_s=0.05)
    await client.aclose()

    assert answered_by == [FALLBACK] * 10
    assert asked == [MODEL] + [FALLBACK] * 10  # the main model's one refusal, then one call each
    assert again.model == MODEL


async def test_a_hung_call_is_dropped_at_the_learned_first_token_deadline_and_answered_once(
    provider: ScriptedProvider,
) -> None:
    client = policy_on(provider, **LONG_ATTEMPT)
    await answer_all(client, llm_client.MIN_SAMPLES, "seen")  # fast first tokens: the deadline is the floor
    provider.script = [Turn(silent=True)]

    completion = await client.complete(chat("hangs once"), CallOptions())
    await client.aclose()

    assert completion.text
    hung, retried = provider.answered("hangs once")
    assert retried.at - hung.at >= llm_client.FLOOR_S
    assert retried.at - hung.at < 10  # not the attempt timeout


async def test_a_slow_thinking_model_is_not_cut_off_once_it_has_been_seen(provider: ScriptedProvider) -> None:
    provider.otherwise = Turn(first_token_after_s=2.5)
    client = policy_on(provider, **LONG_ATTEMPT)

    await answer_all(client, llm_client.MIN_SAMPLES, "thinking")
    completion = await client.complete(chat("thinking again"), CallOptions())
    await client.aclose()

    assert completion.text
    assert len(provider.received) == llm_client.MIN_SAMPLES + 1  # no attempt was dropped


async def test_a_call_hung_before_the_deadline_was_learned_gets_the_learned_one(
    provider: ScriptedProvider,
) -> None:
    provider.script = [Turn(silent=True)]  # one call of the first wave hangs
    client = policy_on(provider, **LONG_ATTEMPT)

    await answer_all(client, 1 + llm_client.MIN_SAMPLES, "first wave")
    await client.aclose()

    assert len(provider.received) == 2 + llm_client.MIN_SAMPLES  # the hung attempt was retried once
    hung = provider.received[0]
    (retried,) = (r for r in provider.answered(hung.text) if r is not hung)
    assert retried.at - hung.at < 10  # dropped at the learned deadline, not the attempt timeout
