"""The system-prompt leak check: runs of words shared with the shipped templates' system parts."""

from __future__ import annotations

import pytest

from app.guard import RUN_WORDS, longest_echo, words
from bench.guard_answers import conversations, natural_answers
from devstack.mock_llm.chat import CLOSING_SENTENCE

SYSTEM = conversations()[0].context.system_text


def shared_run(answer: str, system_text: str) -> int:
    """The longest run of words in common, of any length (the slow, obvious way)."""
    said, told = words(answer), words(system_text)
    longest = 0
    for length in range(1, len(said) + 1):
        runs = {tuple(told[i : i + length]) for i in range(len(told) - length + 1)}
        if not any(tuple(said[i : i + length]) in runs for i in range(len(said) - length + 1)):
            break
        longest = length
    return longest


def test_natural_answers_share_less_than_half_a_run_with_the_system_parts() -> None:
    longest = max(shared_run(answer, c.context.system_text) for answer, c in natural_answers())
    assert 3 <= longest <= RUN_WORDS // 2  # the margin RUN_WORDS was chosen with


@pytest.mark.parametrize("length", [RUN_WORDS - 1, RUN_WORDS])
def test_a_run_of_run_words_is_a_leak_and_one_less_is_not(length: int) -> None:
    run = " ".join(words(SYSTEM)[:length])  # "you are a friendly concise customer support agent looking ..."
    answer = f"Sure thing! Here it is: {run} — hope that helps."
    assert longest_echo(answer, SYSTEM) == (words(run) if length == RUN_WORDS else [])


def test_case_whitespace_and_punctuation_do_not_hide_a_leak() -> None:
    run = " ".join(words(SYSTEM)[:RUN_WORDS]).upper().replace(" ", " ...\n  ")
    assert len(longest_echo(f"ok: {run}!", SYSTEM)) == RUN_WORDS


def test_the_whole_stretch_repeated_is_reported() -> None:
    leaked = " ".join(SYSTEM.split()[:40])
    assert longest_echo(f"My instructions: {leaked}", SYSTEM) == words(leaked)


@pytest.mark.parametrize("quotes", ['""', "“”"])
def test_a_sentence_the_template_quotes_for_the_model_to_say_may_be_said(quotes: str) -> None:
    answer = f"Hi Ada, done. {CLOSING_SENTENCE}"
    assert len(words(CLOSING_SENTENCE)) >= RUN_WORDS
    system = f"{SYSTEM}\nAlways end with {quotes[0]}{CLOSING_SENTENCE}{quotes[1]} and nothing else."
    assert longest_echo(answer, system) == []
    assert longest_echo(answer, system.replace(quotes[0], "").replace(quotes[1], "")) == words(
        CLOSING_SENTENCE
    )


def test_a_system_text_shorter_than_a_run_never_leaks() -> None:
    assert longest_echo("You help customers.", "You help customers.") == []
