"""HeldConversations: the latest event of a conversation wins, activity keeps it held, memory is bounded."""

from __future__ import annotations

from app.handoff import HeldConversations


def test_a_release_ends_a_handoff_and_a_later_handoff_starts_one_again() -> None:
    held = HeldConversations(ttl_s=100)
    held.handed_over("c-1", 10)
    assert held.holds("c-1", 20)
    held.released("c-1", 30)
    assert not held.holds("c-1", 40)
    held.handed_over("c-1", 50)
    assert held.holds("c-1", 60)


def test_an_older_event_read_after_a_newer_one_changes_nothing() -> None:
    held = HeldConversations(ttl_s=100)
    held.released("c-1", 30)  # the control topic read first
    held.handed_over("c-1", 10)
    assert not held.holds("c-1", 40)
    held.handed_over("c-2", 30)
    held.released("c-2", 10)  # a release from before this handoff
    assert held.holds("c-2", 40)


def test_each_message_for_the_human_keeps_the_conversation_held_ttl_longer() -> None:
    held = HeldConversations(ttl_s=100)
    held.handed_over("c-1", 0)
    held.active("c-1", 90)
    assert held.holds("c-1", 150)
    assert not held.holds("c-1", 190)
    held.active("c-2", 90)  # a message for the human of a conversation not known as held
    assert not held.holds("c-2", 95)


def test_the_least_recently_active_conversations_are_forgotten_beyond_the_bound() -> None:
    held = HeldConversations(ttl_s=100, max_conversations=2)
    for number, conversation in enumerate(["c-1", "c-2", "c-3"]):
        held.handed_over(conversation, number)
    assert len(held) == 2
    assert [held.holds(c, 5) for c in ("c-1", "c-2", "c-3")] == [False, True, True]
