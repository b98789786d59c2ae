"""The support agent without a broker: each fate becomes the right records, then an in-order ack.

The topics are recorders standing in for faust's topic handles, the only thing the agent and
its outbox touch of faust when they publish; lanes, in-order acks and the outbox are the real ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import pytest
from prometheus_client import REGISTRY

from agents.support_reply import LaneLimits, SupportAgent
from app.fate import (
    AlreadyPublished,
    Answered,
    Covered,
    DeadLettered,
    Failure,
    Fallback,
    Fate,
    HandedOver,
    Replayed,
    ToHuman,
)
from app.kafka.faust_app import Topics
from app.kafka.outbox import DeadLetters, Outbox
from app.pipeline import SinkFor
from app.schemas import CustomerMessage, ForHuman, PromptRef, Reply, Usage, reply_id_for

TP = faust.types.TP("support.requests", 0)


@dataclass
class RecordingTopic:
    """Records what is sent, and its name in `journal` (shared by the topics of one rig, to show
    the order across topics); with `refuse`, fails like a producer whose broker is gone."""

    name: str
    journal: list[str]
    records: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, bytes]] = field(default_factory=list)
    refuse: bool = False

    async def send(
        self, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        if self.refuse:
            raise ConnectionError("broker gone")
        self.records.append((key, json.loads(value)))
        self.journal.append(self.name)
        self.headers.append(dict(headers))
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.set_result(None)
        return sent

    def values(self) -> list[dict[str, Any]]:
        return [value for _, value in self.records]


@dataclass
class Message:
    value: bytes | None
    offset: int
    key: bytes | None = b"conv"
    headers: Sequence[tuple[str, bytes]] = ()
    topic: str = TP.topic
    partition: int = TP.partition
    tp: faust.types.TP = TP
    acked: bool = False
    timestamp: float = 0.0


@dataclass
class Event:
    message: Message
    acks: list[int]

    def ack(self) -> None:
        self.acks.append(self.message.offset)


def request(message_id: str = "m-1", text: str = "Hi") -> bytes:
    return json.dumps({"message_id": message_id, "conversation_id": "c-1", "text": text}).encode()


def reply_to(message_id: str, status: str = "ok", text: str = "Hello!", answers: Sequence[str] = ()) -> Reply:
    return Reply(
        reply_id=reply_id_for(message_id),
        message_id=message_id,
        conversation_id="c-1",
        text=text,
        status=status,
        model="gpt-4o-mini",
        prompt=PromptRef(name="support_reply", version="v1"),
        usage=Usage(),
        latency_ms=1,
        created_at="2026-12-01T00:00:00.000Z",
        answers=[*answers],
    )


class Rig:
    """An agent on recording topics whose pipeline answers with the fates a test scripts."""

    def __init__(self, *fates: Fate, max_batch: int = 1, max_input_chars: int = 8000) -> None:
        self.fates = list(fates)
        self.batches: list[list[str]] = []
        self.journal: list[str] = []
        self.topics = {
            name: RecordingTopic(name, self.journal)
            for name in ("requests", "replies", "chunks", "dlq", "profiles", "handoffs", "control", "orders")
        }
        self.acks: list[int] = []
        self.crashes: list[BaseException] = []
        self.answered: list[str] = []
        self.marked: list[str] = []
        topics = Topics(*(cast(faust.TopicT, topic) for topic in self.topics.values()))
        dlq = self.topics["dlq"]

        async def produce(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
            await (await dlq.send(key=key, value=value, headers=headers))

        async def crash(error: BaseException) -> None:
            self.crashes.append(error)

        async def mark_published(message_ids: Sequence[str]) -> None:
            self.marked.extend(message_ids)
            self.journal.append("published mark")

        outbox = Outbox(topics, DeadLetters(produce, redact=str), mark_published)
        limits = LaneLimits(max_buffered=16, max_running=4, max_batch=max_batch)
        self.agent = SupportAgent(self.answer, max_input_chars, topics.requests, outbox, crash, limits)
        self.inflight = self.agent.inflight

    async def answer(self, messages: Sequence[CustomerMessage], sink_for: SinkFor) -> list[Fate]:
        self.batches.append([message.message_id for message in messages])
        self.answered.extend(message.message_id for message in messages)
        sink_for(messages[-1])
        return [self.fates.pop(0) for _ in messages]

    async def run(self, *values: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        for offset, value in enumerate(values):
            event = Event(Message(value, offset, headers=headers), self.acks)
            await self.agent.dispatch(cast(faust.EventT[bytes], event))
        await self.inflight.drain(5.0)

    def sent(self, topic: str) -> list[dict[str, Any]]:
        return self.topics[topic].values()


async def test_a_reply_is_published_with_its_closing_chunk_then_acked() -> None:
    rig = Rig(Answered(reply_to("m-1")))
    await rig.run(request("m-1"))
    assert [(key, value["text"]) for key, value in rig.topics["replies"].records] == [(b"c-1", "Hello!")]
    assert [(chunk["done"], chunk["delta"]) for chunk in rig.sent("chunks")] == [(True, "")]
    assert (rig.sent("dlq"), rig.acks, rig.crashes, rig.marked) == ([], [0], [], ["m-1"])


async def test_a_fallback_streams_its_text_and_leaves_a_dead_letter() -> None:
    fallback = reply_to("m-1", status="fallback", text="We will get back to you.")
    rig = Rig(Fallback(fallback, Failure("llm_unavailable", "no answer within 1 s")))
    await rig.run(request("m-1"))
    assert [reply["status"] for reply in rig.sent("replies")] == ["fallback"]
    assert [chunk["delta"] for chunk in rig.sent("chunks")] == ["We will get back to you."]
    assert [letter["error"]["kind"] for letter in rig.sent("dlq")] == ["llm_unavailable"]
    assert rig.acks == [0]


async def test_an_unforeseen_failure_is_only_dead_lettered() -> None:
    rig = Rig(DeadLettered(Failure("internal", "RuntimeError: boom")))
    await rig.run(request("m-1"))
    assert (rig.sent("replies"), rig.sent("chunks")) == ([], [])
    letter = rig.sent("dlq")[0]
    assert (letter["error"]["kind"], letter["source"]["offset"]) == ("internal", 0)
    assert rig.acks == [0]


async def test_a_replayed_reply_is_published_again_without_chunks() -> None:
    rig = Rig(Replayed(reply_to("m-1"), None))
    await rig.run(request("m-1"))
    assert [reply["message_id"] for reply in rig.sent("replies")] == ["m-1"]
    assert rig.sent("chunks") == []
    assert (rig.acks, rig.marked) == ([0], ["m-1"])


async def test_a_reply_the_broker_took_before_is_not_published_again() -> None:
    rig = Rig(AlreadyPublished(reply_to("m-1")))
    await rig.run(request("m-1"))
    assert (rig.sent("replies"), rig.sent("chunks"), rig.sent("dlq")) == ([], [], [])
    assert (rig.acks, rig.marked) == ([0], [])


@pytest.mark.parametrize(
    ("value", "kind"), [(b"{not json", "invalid_json"), (b"[1]", "invalid_message"), (None, "invalid_json")]
)
async def test_bad_input_is_dead_lettered_without_asking_the_pipeline(value: bytes | None, kind: str) -> None:
    rig = Rig()
    await rig.run(value)
    assert [letter["error"]["kind"] for letter in rig.sent("dlq")] == [kind]
    assert (rig.answered, rig.sent("replies"), rig.acks) == ([], [], [0])


async def test_when_the_broker_takes_nothing_the_worker_stops_and_the_event_stays_unacked() -> None:
    rig = Rig(Answered(reply_to("m-1")), Answered(reply_to("m-2")))
    rig.topics["replies"].refuse = True
    await rig.run(request("m-1"))
    assert [str(error) for error in rig.crashes] == ["broker gone"]
    assert (rig.acks, rig.marked) == ([], [])


async def test_events_are_acked_in_offset_order() -> None:
    rig = Rig(*(Answered(reply_to(f"m-{n}")) for n in range(3)))
    await rig.run(request("m-0"), b"{bad", request("m-1"), request("m-2"))
    assert rig.acks == [0, 1, 2, 3]
    assert rig.answered == ["m-0", "m-1", "m-2"]


def trace_ids(topic: RecordingTopic) -> set[str]:
    return {headers["traceparent"].decode().split("-")[1] for headers in topic.headers}


async def test_every_record_continues_the_input_trace() -> None:
    traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    fallback = reply_to("m-1", status="fallback", text="Later.")
    rig = Rig(Fallback(fallback, Failure("llm_unavailable", "no answer")))
    await rig.run(request("m-1"), headers=[("traceparent", traceparent), ("tracestate", b"v=1")])
    produced = [rig.topics[name] for name in ("replies", "chunks", "dlq")]
    assert [trace_ids(topic) for topic in produced] == [{"4bf92f3577b34da6a3ce929d0e0e4736"}] * 3
    spans = [headers["traceparent"].split(b"-")[2] for topic in produced for headers in topic.headers]
    assert len(set(spans)) == len(spans) == 3
    assert b"00f067aa0ba902b7" not in spans
    assert all(headers["tracestate"] == b"v=1" for topic in produced for headers in topic.headers)


async def test_a_message_without_a_trace_starts_one_for_all_its_records() -> None:
    rig = Rig(Answered(reply_to("m-2")))
    await rig.run(b"{bad", request("m-2"))
    [started] = trace_ids(rig.topics["replies"]) | trace_ids(rig.topics["chunks"])
    [other] = trace_ids(rig.topics["dlq"])
    assert len(started) == len(other) == 32
    assert started != other


async def test_messages_answered_together_get_one_reply_and_are_acked_after_it() -> None:
    together = reply_to("m-2", answers=["m-0", "m-1", "m-2"])
    rig = Rig(Covered(together), Covered(together), Answered(together), max_batch=10)
    await rig.run(request("m-0"), request("m-1"), request("m-2"))
    assert rig.batches == [["m-0", "m-1", "m-2"]]
    assert [(r["message_id"], r["answers"]) for r in rig.sent("replies")] == [("m-2", ["m-0", "m-1", "m-2"])]
    assert [(c["message_id"], c["done"]) for c in rig.sent("chunks")] == [("m-2", True)]
    assert (rig.acks, rig.marked, rig.crashes) == ([0, 1, 2], ["m-0", "m-1", "m-2"], [])


async def test_a_batch_is_split_where_the_texts_together_outgrow_one_message() -> None:
    rig = Rig(*(Answered(reply_to(f"m-{n}")) for n in range(4)), max_batch=10, max_input_chars=20)
    await rig.run(*(request(f"m-{n}", text="x" * 9) for n in range(4)))
    assert rig.batches == [["m-0", "m-1"], ["m-2", "m-3"]]  # 9 + 1 + 9 fits 20; a third would not
    assert rig.acks == [0, 1, 2, 3]


async def test_when_a_batch_s_reply_is_refused_none_of_its_events_is_acked() -> None:
    together = reply_to("m-1", answers=["m-0", "m-1"])
    rig = Rig(Covered(together), Answered(together), max_batch=10)
    rig.topics["replies"].refuse = True
    await rig.run(request("m-0"), request("m-1"))
    assert [str(error) for error in rig.crashes] == ["broker gone"]
    assert rig.acks == []


async def test_a_handoff_reply_goes_out_after_its_handoff_record_and_streams_its_text() -> None:
    handoff = reply_to("m-1", status="handoff", text="A person takes over.").model_copy(
        update={"handoff": {"kind": "intent", "detail": "rule 'asks for a person': intent wants_human"}}
    )
    rig = Rig(HandedOver(handoff))
    await rig.run(request("m-1"))
    [record] = rig.sent("handoffs")
    assert (record["conversation_id"], record["message_ids"], record["reason"]["kind"]) == (
        "c-1",
        ["m-1"],
        "intent",
    )
    assert [reply["status"] for reply in rig.sent("replies")] == ["handoff"]
    assert [chunk["delta"] for chunk in rig.sent("chunks")] == ["A person takes over."]
    assert (rig.acks, rig.marked) == ([0], ["m-1"])


async def test_a_message_for_the_human_goes_to_the_handoff_topic_only() -> None:
    record = ForHuman(conversation_id="c-1", message_id="m-1", text="Hi", at="2026-12-01T00:00:00.000Z")
    rig = Rig(ToHuman(record))
    await rig.run(request("m-1"))
    assert rig.sent("handoffs") == [record.model_dump()]
    assert (rig.sent("replies"), rig.sent("chunks"), rig.sent("dlq")) == ([], [], [])
    assert rig.acks == [0]


FALLBACK = reply_to("m-1", status="fallback", text="Later.")
HANDOFF = reply_to("m-1", status="handoff", text="A person takes over.").model_copy(
    update={"handoff": {"kind": "intent", "detail": "rule 'asks for a person': intent wants_human"}}
)
LETTER = Failure("llm_unavailable", "no answer")
FOR_HUMAN = ForHuman(conversation_id="c-1", message_id="m-1", text="Hi", at="2026-12-01T00:00:00.000Z")


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.mark.parametrize(
    ("fate", "journal", "label", "published_now"),
    [
        (Answered(reply_to("m-1")), ["chunks", "replies", "published mark"], "ok", True),
        (Fallback(FALLBACK, LETTER), ["chunks", "replies", "dlq", "published mark"], "fallback", True),
        (HandedOver(HANDOFF), ["chunks", "handoffs", "replies", "published mark"], "handoff", True),
        (Replayed(HANDOFF, None), ["handoffs", "replies", "published mark"], "replayed", True),
        (Replayed(FALLBACK, LETTER), ["replies", "dlq", "published mark"], "replayed", True),
        (AlreadyPublished(reply_to("m-1")), [], "already_published", False),
        (Covered(FALLBACK, LETTER), ["dlq"], "coalesced", False),
        (ToHuman(FOR_HUMAN), ["handoffs"], "for_human", False),
        (DeadLettered(LETTER), ["dlq"], "dead_lettered", False),
    ],
    ids=[
        "answered",
        "fallback",
        "handed-over",
        "replayed-handoff",
        "replayed-fallback",
        "already-published",
        "covered-fallback",
        "to-human",
        "dead-lettered",
    ],
)
async def test_each_fate_publishes_its_records_in_order_and_is_counted_by_its_outcome(
    fate: Fate, journal: list[str], label: str, published_now: bool
) -> None:
    counted = sample("enricher_messages_total", {"outcome": label})
    end_to_end = sample("enricher_end_to_end_seconds_count")
    rig = Rig(fate)
    await rig.run(request("m-1"))
    assert (rig.journal, rig.acks, rig.crashes) == (journal, [0], [])
    assert sample("enricher_messages_total", {"outcome": label}) == counted + 1
    assert sample("enricher_end_to_end_seconds_count") == end_to_end + published_now
