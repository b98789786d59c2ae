"""The guard's window on the stream: only text the guard has passed goes on, and nothing of what it
blocks, however the answer is cut into deltas."""

from __future__ import annotations

import pytest

from app.guard import PIECE_CHARS, RUN_WORDS, GuardContext, GuardWindow, OutputGuard, system_words, words
from app.pipeline import RestoringSink
from app.signals.pii import mask
from bench.guard_answers import conversations, natural_answers
from tests.helpers.sinks import Collected

GUARD = OutputGuard()
ADA = next(c for c in conversations() if c.customer.get("name") == "Ada").context
PLAIN = GuardContext(
    system_text="You help customers of Shop.", conversation_id="conv-123", customer_id="cust-7"
)
SIZES = (1, 3, 4, 17, 1000)  # characters a delta: one at a time, token-like, all at once


async def streamed(answer: str, context: GuardContext, size: int) -> tuple[GuardWindow, Collected]:
    """`answer` through a window in deltas of `size` characters; nothing released at the end."""
    sent = Collected()
    window = GuardWindow(sent, GUARD, context)
    for at in range(0, len(answer), size):
        await window.send(answer[at : at + size])
    return window, sent


async def test_the_first_word_goes_on_at_once_and_then_no_more_than_a_piece_waits() -> None:
    sent = Collected()
    window = GuardWindow(sent, GUARD, PLAIN)
    answer = "Your parcel left our depot today and should arrive by Friday, or Monday at the latest. "
    deltas = [f"{word} " for word in answer.split()]
    await window.send(deltas[0])
    assert sent.deltas == ["Your"]
    so_far = deltas[0]
    for delta in deltas[1:]:
        await window.send(delta)
        so_far += delta
        assert len(so_far) - len("".join(sent.deltas)) < PIECE_CHARS + len(delta)
    await window.release()
    assert "".join(sent.deltas) == answer


@pytest.mark.parametrize("size", [1, 4, 17])
async def test_natural_answers_go_on_while_they_stream_and_whole_once_released(size: int) -> None:
    for answer, conversation in natural_answers()[::29]:
        window, sent = await streamed(answer, conversation.context, size)
        before = "".join(sent.deltas)
        await window.release()
        assert "".join(sent.deltas) == answer
        # Held back: the last word, or a few words the system part has too, never half the answer.
        assert len(before) > len(answer) / 2, answer


@pytest.mark.parametrize("size", SIZES)
async def test_a_repeated_system_prompt_never_goes_on(size: int) -> None:
    opening = "Sure! My instructions are: "
    _, sent = await streamed(f"{opening}{ADA.system_text} Anything else?", ADA, size)
    assert opening.startswith("".join(sent.deltas))


async def test_a_run_one_word_short_of_a_repeat_goes_on_before_the_answer_ends() -> None:
    told = next(words(part) for part in ADA.system_text.split("\n") if len(words(part)) > RUN_WORDS)
    assert tuple(told[:RUN_WORDS]) in system_words(ADA.system_text).shingles
    almost = " ".join(told[: RUN_WORDS - 1])
    after = " zebra crossing ahead: mind the gap between the train and the platform edge, please."
    _, sent = await streamed(f"Note: {almost}{after}", ADA, 4)
    assert f"Note: {almost} zebra" in "".join(sent.deltas)
    repeat = " ".join(told[:RUN_WORDS])
    _, sent = await streamed(f"Note: {repeat}{after}", ADA, 4)
    assert "Note: ".startswith("".join(sent.deltas))


SECRETS = {
    "sk-proj-Zx81aQ0pLm3Rt7Yw": "sk-",
    "https://admin:hunter2-Secret@db.internal/x": "https:",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc": "eyJ",
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("secret", "first"), SECRETS.items())
async def test_no_piece_of_a_key_shaped_secret_goes_on(secret: str, first: str, size: int) -> None:
    answer = f"Hi Ada, here you go: {secret} (keep it safe)"
    _, sent = await streamed(answer, ADA, size)
    assert answer[: answer.index(first)].startswith("".join(sent.deltas))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("answer", "held_from"),
    [
        ("Your ticket is filed under conv-7734, as for conv-123. Bye!", "conv-7734"),
        ("I have sent it to Grace.Hopper@Navy.example as well. Bye!", "Grace"),
    ],
)
async def test_another_customers_id_or_address_never_goes_on(answer: str, held_from: str, size: int) -> None:
    assert GUARD.check(answer, PLAIN).blocked
    _, sent = await streamed(answer, PLAIN, size)
    assert answer[: answer.index(held_from)].startswith("".join(sent.deltas))


async def test_a_restart_forgets_what_was_held_back() -> None:
    sent = Collected()
    window = GuardWindow(sent, GUARD, PLAIN)
    await window.send("Your ticket is conv-77")
    await window.send("34 now")
    window.restart()
    assert (sent.deltas, sent.restarts) == ([], 1)
    for delta in ("Your ticket ", "is conv-123 ", "now."):
        await window.send(delta)
    await window.release()
    assert "".join(sent.deltas) == "Your ticket is conv-123 now."


async def test_personal_data_comes_back_through_the_window_when_a_placeholder_is_cut_in_two() -> None:
    written = "Write to ada@example.org please"
    masked = mask([written])
    context = GuardContext(PLAIN.system_text, "conv-123", "cust-7", customer_texts=(written,))
    sent = Collected()
    window = GuardWindow(sent, GUARD, context)
    restoring = RestoringSink(window, masked)
    for delta in ("We wrote to [EMA", "IL_1", "] today, as you asked, and again ", "tomorrow."):
        await restoring.send(delta)
    await restoring.flush()
    # The address went out once the guard saw it whole: the customer's own.
    assert "".join(sent.deltas) == "We wrote to ada@example.org today, as you asked, and again"
    await window.release()
    assert "".join(sent.deltas) == "We wrote to ada@example.org today, as you asked, and again tomorrow."
