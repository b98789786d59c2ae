"""The worker's consumer transport: found through its entry point, a short fetch wait, and
partitions that stop at a batch they cannot decode (aiokafka internals, pinned in constraints.txt)."""

from __future__ import annotations

import functools
import inspect
from types import SimpleNamespace
from typing import Any

import aiokafka.codec
import faust.tables
import faust.transport
import mode
import pytest
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY

from app.kafka import internals as kafka_transport
from app.kafka.faust_app import build_app
from app.kafka.partition_health import UnreadablePartitions
from app.settings import Settings

TP = TopicPartition("support.requests", 3)
LZ4 = 3  # the codec id of a record batch's attributes


def test_transport_is_registered_for_its_scheme() -> None:
    assert faust.transport.by_url(f"{kafka_transport.SCHEME}://localhost:9092") is kafka_transport.Transport


def test_app_consumes_through_it_and_produces_through_plain_kafka_with_the_chosen_codec() -> None:
    settings = Settings.model_validate(
        {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"}
    )
    app = build_app(settings)
    assert [str(url) for url in app.conf.broker_consumer] == [
        "kafka-fastfetch://a:1",
        "kafka-fastfetch://b:2",
    ]
    assert [str(url) for url in app.conf.broker_producer] == ["kafka://a:1", "kafka://b:2"]
    assert app.conf.producer_compression_type is None
    zstd = build_app(settings.model_copy(update={"producer_compression": "zstd"}))
    assert zstd.conf.producer_compression_type == "zstd"


def batch(base_offset: int, values: list[bytes], codec: int = 0) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=None, key=None, value=value, headers=[])
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big")  # the builder numbers from 0
    return bytes(data)


def partition_records(data: bytes) -> PartitionRecords:
    return PartitionRecords(TP, MemoryRecords(data), [], 0, None, None, True, 0)  # CRCs checked


def fetch_result(data: bytes) -> tuple[FetchResult, Any]:
    """A fetch of `data` for TP at offset 0, as the fetcher hands it to `getmany`; and TP's state."""
    subscription = SubscriptionState()
    subscription.assign_from_user({TP})
    assignment = subscription.subscription.assignment
    state = assignment.state_value(TP)
    state.seek(0)
    return FetchResult(TP, assignment=assignment, partition_records=partition_records(data), backoff=0), state


@pytest.fixture(autouse=True)
def plain_aiokafka_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test here installs in aiokafka (a faust consumer of the app installs both patches)
    is undone after it: the process's other tests read with plain aiokafka, in any order."""
    monkeypatch.setattr(PartitionRecords, "__next__", PartitionRecords.__next__)
    monkeypatch.setattr(FetchResult, "getall", FetchResult.getall)
    monkeypatch.setattr(PartitionRecords, "_stops_at_undecodable_batches", False, raising=False)
    monkeypatch.setattr(GroupCoordinator, "_maybe_leave_group", GroupCoordinator._maybe_leave_group)
    monkeypatch.setattr(GroupCoordinator, "_leaves_from_generation_zero", False, raising=False)


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard installed for this test only (undone by `plain_aiokafka_after`)."""
    monkeypatch.setattr(kafka_transport, "_undecodable", kafka_transport.queue.SimpleQueue())
    kafka_transport.stop_partitions_at_undecodable_batches()


def test_plain_aiokafka_raises_at_a_batch_without_its_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    data = batch(0, [b"a"], LZ4)
    monkeypatch.setattr(aiokafka.codec, "has_lz4", lambda: False)
    with pytest.raises(aiokafka.errors.UnsupportedCodecError):
        list(partition_records(data))


async def test_the_guard_stops_the_partition_at_the_batch_pauses_it_and_queues_where_and_why(
    guarded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = batch(0, [b"a", b"b"]) + batch(2, [b"c"], LZ4) + batch(3, [b"d"])
    monkeypatch.setattr(aiokafka.codec, "has_lz4", lambda: False)
    fetched, state = fetch_result(data)

    assert [r.value for r in fetched.getall()] == [b"a", b"b"]
    assert state.position == 2  # on the batch that failed: nothing after it is skipped
    assert state.paused  # not fetched again until assigned anew
    failure = kafka_transport._undecodable.get_nowait()
    assert (failure.tp, failure.offset) == (TP, 2)
    assert isinstance(failure.error, aiokafka.errors.UnsupportedCodecError)
    assert kafka_transport._undecodable.empty()


async def test_a_corrupt_batch_stops_the_partition_the_same_way(guarded: None) -> None:
    corrupt = bytearray(batch(1, [b"b"]))
    corrupt[-1] ^= 0xFF  # the last byte of the record: the batch's CRC no longer matches
    fetched, state = fetch_result(batch(0, [b"a"]) + bytes(corrupt))

    assert [r.value for r in fetched.getall()] == [b"a"]
    assert (state.position, state.paused) == (1, True)
    failure = kafka_transport._undecodable.get_nowait()
    assert (failure.tp, failure.offset) == (TP, 1)
    assert isinstance(failure.error, aiokafka.errors.CorruptRecordException)


async def test_a_readable_fetch_is_untouched_by_the_guard(guarded: None) -> None:
    fetched, state = fetch_result(batch(0, [b"a"]) + batch(1, [b"b"], LZ4))

    assert [r.value for r in fetched.getall()] == [b"a", b"b"]
    assert (state.position, state.paused) == (2, False)
    assert kafka_transport._undecodable.empty()


def test_unreadable_partitions_are_left_out_reported_and_forgotten_on_revoke() -> None:
    other = TopicPartition("support.requests", 4)
    unreadable = UnreadablePartitions()
    unreadable.add(TP, 17, aiokafka.errors.UnsupportedCodecError("no lz4"))
    labels = {"topic": TP.topic, "partition": "3"}

    assert unreadable.readable({TP, other}) == {other}
    assert unreadable.readable(None) is None
    assert unreadable.reasons() == {
        "support.requests[3]": "paused at offset 17: UnsupportedCodecError: no lz4"
    }
    assert REGISTRY.get_sample_value("enricher_kafka_partitions_unreadable", labels) == 1
    unreadable.forget({TP, other})
    assert unreadable.readable({TP}) == {TP}
    assert unreadable.reasons() == {}
    assert REGISTRY.get_sample_value("enricher_kafka_partitions_unreadable", labels) is None


def test_faust_table_manager_still_waits_a_second_then_starts_as_tableless_manager_does() -> None:
    # TablelessManager.on_start is faust's own minus the wait: a faust that starts its table
    # manager otherwise must be looked at again.
    source = inspect.getsource(faust.tables.TableManager.on_start)
    steps = [line.strip() for line in source.splitlines()[2:]]
    assert steps == [
        "await self.sleep(1.0)",
        "if not self.should_stop:",
        "await self._update_channels()",
        "await self.recovery.start()",
    ]


async def test_the_worker_table_manager_starts_without_waiting_while_it_has_no_tables() -> None:
    app = build_app(Settings.model_validate({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}))
    manager = app.tables
    assert isinstance(manager, kafka_transport.TablelessManager)
    steps: list[str] = []

    async def record(step: str, *args: object) -> None:
        steps.append(step)

    manager.sleep = functools.partial(record, "sleep")  # type: ignore[method-assign]
    manager._update_channels = functools.partial(record, "channels")  # type: ignore[method-assign]
    manager.recovery.start = functools.partial(record, "recovery")  # type: ignore[method-assign]
    await manager.on_start()
    assert steps == ["channels", "recovery"]
    app.Table("a-table")  # with a table, faust's wait for more comes back
    steps.clear()
    await manager.on_start()
    assert steps == ["sleep", "channels", "recovery"]


def _app() -> faust.App:
    return build_app(Settings.model_validate({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}))


async def test_a_stop_does_not_wait_a_second_for_messages_that_were_handed_back() -> None:
    consumer = _app().consumer
    handed_back = faust.types.Message("support.requests", 0, 7, 0.0, None, [], b"k", b"v", None)
    kafka_transport.hand_back(handed_back)
    consumer._unacked_messages.add(handed_back)
    steps: list[str] = []

    async def record(step: str, *args: object, **kwargs: object) -> None:
        steps.append(step)

    consumer.commit = functools.partial(record, "commit")
    consumer.commit_and_end_transactions = functools.partial(record, "commit")
    consumer._wait_for_ack = functools.partial(record, "wait a second")
    try:
        await consumer.wait_empty()
    finally:
        consumer._thread.thread_loop.close()  # made with the consumer, for a thread never started
    assert "wait a second" not in steps
    assert not consumer._unacked_messages


async def test_the_worker_closes_its_loop_without_mode_pausing_a_second_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "await asyncio.sleep(1.0)" in inspect.getsource(mode.Worker._sentinel_task)  # what it replaces
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    # The pauses it asks for, not the time it takes: that would depend on the machine's load.
    monkeypatch.setattr(kafka_transport, "asyncio", SimpleNamespace(sleep=pause))
    # Called unbound: a Worker of its own would make (and leave open) an event loop of its own.
    await kafka_transport.DrainingWorker._sentinel_task(None)  # type: ignore[arg-type]
    assert sum(pauses) < 1.0


class _Member:
    """What aiokafka's leave reads of its group coordinator, recording the requests it sends."""

    def __init__(self, generation: int, instance_id: str | None = None) -> None:
        self.group_id, self.member_id, self._group_instance_id = "g", "member-1", instance_id
        self.generation = generation
        self.sent: list[str] = []

    async def _send_req(self, request: Any) -> None:
        self.sent.append(type(request).__name__)

    def reset_generation(self) -> None:
        self.generation = -1


@pytest.mark.parametrize(
    ("generation", "instance_id", "leaves"),
    [(0, None, True), (3, None, True), (-1, None, False), (0, "worker-0", False)],
)
async def test_a_member_leaves_from_generation_zero_too_unless_static(
    generation: int, instance_id: str | None, leaves: bool
) -> None:
    # What the patch works around, in aiokafka's own source (the method itself is patched by now).
    assert "if self.generation > 0 and self._group_instance_id is None:" in inspect.getsource(
        inspect.getmodule(GroupCoordinator)
    )
    kafka_transport.leave_from_generation_zero()
    member = _Member(generation, instance_id)
    await GroupCoordinator._maybe_leave_group(member)
    assert bool(member.sent) == leaves
    assert member.generation == -1
