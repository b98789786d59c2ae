"""A draft's child process: its limits hold, and what it gives back is called with capped max_tokens."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys

import pytest

from app.prompts.library import PromptLibrary
from app.prompts.studio import draft as studio_draft
from app.prompts.studio.draft import STUDIO_MAX_TOKENS, DraftRefused, DraftRender, Side, render_draft
from app.schemas import CustomerMessage
from tests.helpers import studio_drafts as drafts
from tests.helpers.workers import PROMPTS

MESSAGE = CustomerMessage(message_id="m-1", conversation_id="c-1", text="Mail me at ada@example.org")


def _limited(code: str) -> subprocess.CompletedProcess[str]:
    """`code` run in a child held to the draft child's limits."""
    run = f"from app.prompts.studio.draft import _limit\n_limit()\n{code}"
    return subprocess.run(
        [sys.executable, "-c", run], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_child_is_killed_past_its_cpu_time() -> None:
    assert _limited("while True:\n    pass").returncode == -signal.SIGXCPU


def test_the_child_cannot_take_more_memory_than_its_limit() -> None:
    size = studio_draft.MEMORY_LIMIT_BYTES
    result = _limited(f"try:\n    bytearray({size})\nexcept MemoryError:\n    print('refused')")
    assert result.stdout.strip() == "refused", result.stderr


async def test_a_draft_renders_in_the_child_masked_with_the_messages_passages() -> None:
    passage = {"id": "returns-policy", "title": "Our returns policy", "text": "Within 30 days.", "score": 0.7}
    render = await render_draft(PROMPTS, drafts.FILE, drafts.DRAFT, [MESSAGE], [{"name": "Ada"}], [[passage]])

    [prompt] = render.prompts
    assert not isinstance(prompt, str), prompt
    assert f"name: {drafts.PERSONA}" in prompt[0]["content"]
    assert "[EMAIL_1]" in prompt[-1]["content"]
    assert "ada@example.org" not in prompt[-1]["content"]
    assert (
        '<article id="returns-policy" title="Our returns policy">\nWithin 30 days.' in prompt[-1]["content"]
    )


async def test_a_draft_past_the_wall_clock_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studio_draft, "WALL_LIMIT_S", 0.0)

    with pytest.raises(DraftRefused) as refused:
        await render_draft(PROMPTS, drafts.FILE, drafts.DRAFT, [MESSAGE], [{}], [[]])

    [problem] = refused.value.problems
    assert (problem.file, problem.line) == (drafts.FILE, None)
    assert "takes over 0 s" in problem.reason


@pytest.mark.parametrize(
    ("draft_max", "current_max", "sent"),
    [
        (100_000, None, STUDIO_MAX_TOKENS),
        (None, None, STUDIO_MAX_TOKENS),
        (200, None, 200),
        (5000, 2000, 2000),
    ],
)
def test_a_drafts_max_tokens_is_capped(draft_max: int | None, current_max: int | None, sent: int) -> None:
    current = next(t for t in PromptLibrary.load(PROMPTS).templates if t.path.name == drafts.FILE)
    current = dataclasses.replace(current, max_tokens=current_max)

    side = Side.draft(DraftRender("v", None, draft_max, []), current)

    assert side.options.max_tokens == sent
