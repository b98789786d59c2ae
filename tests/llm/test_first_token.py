"""The first-token deadline: the attempt timeout until a model is known, then a multiple of its p99."""

from __future__ import annotations

import asyncio

from app.llm import client as llm_client
from app.llm.client import FirstTokenDeadline


def test_an_unknown_model_gets_the_whole_attempt_timeout() -> None:
    deadline = FirstTokenDeadline(30.0)
    for _ in range(llm_client.MIN_SAMPLES - 1):
        deadline.observe("fast", 0.1)
    assert deadline.deadline_s("fast") == 30.0
    assert deadline.deadline_s("never seen") == 30.0


def test_a_fast_model_is_cut_off_within_about_a_second_and_a_slow_thinker_is_not() -> None:
    deadline = FirstTokenDeadline(30.0)
    for _ in range(llm_client.MIN_SAMPLES):
        deadline.observe("fast", 0.15)
        deadline.observe("thinker", 3.0)
    assert deadline.deadline_s("fast") == llm_client.FLOOR_S
    assert deadline.deadline_s("thinker") == 12.0


def test_the_deadline_never_exceeds_the_attempt_timeout_and_a_fixed_one_wins() -> None:
    deadline = FirstTokenDeadline(10.0)
    for _ in range(llm_client.MIN_SAMPLES):
        deadline.observe("slow", 20.0)
    assert deadline.deadline_s("slow") == 10.0
    assert FirstTokenDeadline(30.0, fixed_s=2.5).deadline_s("slow") == 2.5


async def wait_while_learning(streamed: bool) -> bool:
    """An attempt sent before `fast` was learned, waiting past the first look: timed out?"""
    deadline = FirstTokenDeadline(30.0)
    try:
        async with asyncio.timeout(30.0) as silence:
            stop = deadline.follow_learning(
                "fast", silence, asyncio.get_running_loop().time(), lambda: streamed
            )
            for _ in range(llm_client.MIN_SAMPLES):
                deadline.observe("fast", 0.1)  # learned while the attempt waits: 1 s
            try:
                await asyncio.sleep(llm_client.FLOOR_S * 2)
            finally:
                stop()
    except TimeoutError:
        return True
    return False


async def test_a_call_sent_before_learning_gets_the_learned_deadline_unless_it_has_streamed() -> None:
    assert await wait_while_learning(streamed=False)
    assert not await wait_while_learning(streamed=True)  # its chunks move the deadline on
