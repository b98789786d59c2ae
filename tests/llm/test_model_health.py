"""Models that keep refusing are cooled down, growing, and come back after the cool-down."""

from __future__ import annotations

import pytest

from app.llm import health as llm_health
from app.llm.health import ModelHealth

MODELS = ("main", "fallback")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(llm_health.time, "monotonic", lambda: now[0])
    return now


def test_a_refusal_cools_at_once_and_the_model_returns_after_the_cool_down(clock: list[float]) -> None:
    health = ModelHealth(MODELS)
    health.failed("main", refused=True)
    assert health.order() == ("fallback",)
    clock[0] += llm_health.FIRST_COOLDOWN_S
    assert health.order() == MODELS


def test_failures_in_a_row_cool_and_an_answer_resets_the_count(clock: list[float]) -> None:
    health = ModelHealth(MODELS)
    for _ in range(llm_health.FAILURES_TO_COOL - 1):
        health.failed("main")
    health.answered("main")
    health.failed("main")
    assert health.order() == MODELS
    for _ in range(llm_health.FAILURES_TO_COOL - 1):
        health.failed("main")
    assert health.order() == ("fallback",)


def test_cool_downs_double_up_to_the_maximum_and_a_known_reset_bounds_them(clock: list[float]) -> None:
    health = ModelHealth(MODELS)
    lengths = []
    for _ in range(8):
        health.failed("main", refused=True)
        start = clock[0]
        while health.order() != MODELS:
            clock[0] += 1
        lengths.append(clock[0] - start)
    assert lengths[:3] == [30, 60, 120]
    assert lengths[-1] == llm_health.MAX_COOLDOWN_S
    health.failed("main", refused=True, resets_in_s=5)
    clock[0] += 5
    assert health.order() == MODELS


def test_when_every_model_is_cooling_all_are_tried(clock: list[float]) -> None:
    health = ModelHealth(MODELS)
    health.failed("main", refused=True)
    health.failed("fallback", refused=True)
    assert health.order() == MODELS
