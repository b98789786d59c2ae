"""The hub's routing and replay rules, without a broker."""

from __future__ import annotations

import asyncio

from starlette.types import Message

from app.chat.hub import ConversationHub, Event, EventStream, Subscription


async def _drain(subscription: Subscription) -> list[Event]:
    events = []
    async for event in subscription.events(wait_s=0.05):
        if event is None:  # nothing more queued
            break
        events.append(event)
    return events


async def test_a_conversation_nobody_watches_is_not_kept() -> None:
    hub = ConversationHub()
    hub.publish("c-unseen", "reply", "{}")
    hub.watch("c-posted")
    hub.publish("c-posted", "reply", '{"n": 1}')
    assert await _drain(hub.subscribe("c-unseen", f"{hub.boot}.0")) == []
    assert [e.data for e in await _drain(hub.subscribe("c-posted", f"{hub.boot}.0"))] == ['{"n": 1}']


async def test_an_id_of_another_gateway_process_replays_nothing() -> None:
    hub = ConversationHub()
    hub.watch("c-1")
    for n in range(3):
        hub.publish("c-1", "chunk", str(n))
    assert await _drain(hub.subscribe("c-1", "0badb007.0")) == []
    assert [e.data for e in await _drain(hub.subscribe("c-1", f"{hub.boot}.2"))] == ["2"]
    assert await _drain(hub.subscribe("c-1", None)) == []


async def test_a_subscriber_that_falls_behind_is_ended_not_waited_for() -> None:
    hub = ConversationHub(queue_events=2)
    slow = hub.subscribe("c-1", None)
    for n in range(5):
        hub.publish("c-1", "chunk", str(n))
    assert await _drain(slow) == []  # ended: the browser reconnects and replays from the buffer
    assert [e.data for e in await _drain(hub.subscribe("c-1", f"{hub.boot}.0"))] == ["0", "1", "2", "3", "4"]


async def test_the_least_recently_used_idle_conversation_goes_first() -> None:
    hub = ConversationHub(max_conversations=2)
    listening = hub.subscribe("c-listened", None)
    hub.watch("c-old")
    hub.watch("c-new")  # one too many: c-old goes, c-listened has a subscriber
    for conversation in ("c-listened", "c-old", "c-new"):
        hub.publish(conversation, "reply", conversation)
    assert [e.data for e in await _drain(listening)] == ["c-listened"]
    assert [e.data for e in await _drain(hub.subscribe("c-new", f"{hub.boot}.0"))] == ["c-new"]
    assert await _drain(hub.subscribe("c-old", f"{hub.boot}.0")) == []


async def test_a_stream_cut_before_its_first_event_unsubscribes_and_gives_its_slot_back() -> None:
    hub = ConversationHub()
    released: list[bool] = []
    stream = EventStream(hub, hub.subscribe("c-1", None), lambda: released.append(True))
    assert hub.subscribers == 1

    async def receive() -> Message:
        return {"type": "http.disconnect"}  # the browser is gone already

    async def send(message: Message) -> None:
        await asyncio.Event().wait()  # and never takes the response's start

    async with asyncio.timeout(5.0):
        await stream({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send)
    assert (hub.subscribers, released) == (0, [True])
