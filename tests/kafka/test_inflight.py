"""Events from take to ack: keyed lanes (order per key, concurrency across keys, bounded buffer,
batches of what queued), and in-order acks (a finished event waits for every earlier one of its
partition)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

from app.kafka.inflight import Gate, Lanes, OrderedAcks
from tests.helpers.polling import until

Job = Callable[[], Awaitable[None]]


def job_lanes(max_buffered: int, max_running: int, gate: Gate | None = None) -> Lanes[Job]:
    """Lanes whose items are jobs, each batch (of one) run as it comes."""

    async def run(batch: Sequence[Job]) -> None:
        for job in batch:
            await job()

    return Lanes(run, max_buffered, max_running, gate)


async def test_order_per_key_and_concurrency_across_keys() -> None:
    lanes = job_lanes(max_buffered=1000, max_running=1000)
    done: dict[str, list[int]] = {}
    running = 0
    peak = 0

    def job(key: str, index: int) -> object:
        async def run() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(random.uniform(0, 0.01))
            running -= 1
            done.setdefault(key, []).append(index)

        return run

    for index in range(20):
        for key in ("a", "b", "c", "d", "e"):
            await lanes.submit(key, job(key, index))  # type: ignore[arg-type]
    assert await lanes.wait_idle(10)
    assert all(indexes == list(range(20)) for indexes in done.values())
    assert peak == 5
    await lanes.close()


async def test_submit_waits_when_buffer_is_full() -> None:
    lanes = job_lanes(max_buffered=3, max_running=3)
    release = asyncio.Event()

    async def blocked() -> None:
        await release.wait()

    for key in ("a", "b", "c"):
        await lanes.submit(key, blocked)
    fourth = asyncio.create_task(lanes.submit("d", blocked))
    await asyncio.sleep(0)  # fourth has taken its first step: with room, it would be done now
    assert not fourth.done()
    assert lanes.buffered == 3
    release.set()
    async with asyncio.timeout(1):
        await fourth
    assert await lanes.wait_idle(1)
    await lanes.close()


async def test_a_failing_job_does_not_stop_its_lane() -> None:
    lanes = job_lanes(max_buffered=10, max_running=10)
    seen: list[str] = []

    async def boom() -> None:
        raise RuntimeError("boom")

    async def fine() -> None:
        seen.append("fine")

    await lanes.submit("k", boom)
    await lanes.submit("k", fine)
    assert await lanes.wait_idle(1)
    assert seen == ["fine"]
    await lanes.close()


async def test_wait_idle_times_out_and_close_cancels() -> None:
    lanes = job_lanes(max_buffered=10, max_running=10)
    await lanes.submit("k", lambda: asyncio.sleep(60))
    assert not await lanes.wait_idle(0.05)
    await lanes.close()
    assert lanes.buffered == 0


async def test_stop_finishes_buffered_jobs_and_takes_no_more() -> None:
    lanes = job_lanes(max_buffered=10, max_running=10)
    finished: list[str] = []

    def job(name: str) -> object:
        async def run() -> None:
            await asyncio.sleep(0.02)
            finished.append(name)

        return run

    for name in ("a1", "a2", "b1"):
        await lanes.submit(name[0], job(name))  # type: ignore[arg-type]
    assert await lanes.stop(grace_s=1) == 0
    await lanes.submit("c", job("c1"))  # type: ignore[arg-type]
    assert await lanes.wait_idle(1)  # taken, c1 would be waited for here
    assert sorted(finished) == ["a1", "a2", "b1"]


async def test_stop_hands_back_what_outlives_the_grace() -> None:
    lanes = job_lanes(max_buffered=10, max_running=10)
    await lanes.submit("k", lambda: asyncio.sleep(60))
    await lanes.submit("k", lambda: asyncio.sleep(60))
    await asyncio.sleep(0)
    assert await lanes.stop(grace_s=0.05) == 2
    assert lanes.buffered == 0


async def test_drop_queued_keeps_running_jobs_and_frees_room() -> None:
    lanes = job_lanes(max_buffered=4, max_running=4)
    release = asyncio.Event()
    finished: list[str] = []

    def job(name: str) -> object:
        async def run() -> None:
            await release.wait()
            finished.append(name)

        return run

    for name in ("a1", "a2", "a3", "b1"):
        await lanes.submit(name[0], job(name))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert lanes.drop_queued() == 2
    assert lanes.buffered == 2
    async with asyncio.timeout(1):
        await lanes.submit("c", job("c1"))  # type: ignore[arg-type]
    release.set()
    assert await lanes.wait_idle(1)
    assert sorted(finished) == ["a1", "b1", "c1"]
    await lanes.close()


async def test_no_more_than_max_running_jobs_run_at_once() -> None:
    lanes = job_lanes(max_buffered=100, max_running=3)
    running = 0
    peak = 0

    async def job() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    for key in range(20):
        await lanes.submit(str(key), job)
    assert await lanes.wait_idle(5)
    assert peak == 3
    await lanes.close()


async def test_the_gate_holds_jobs_unstarted_so_they_can_be_handed_back() -> None:
    gate_open = asyncio.Event()
    at_gate: list[str] = []

    async def gate() -> None:
        at_gate.append("lane")
        await gate_open.wait()

    lanes = job_lanes(max_buffered=10, max_running=10, gate=gate)
    ran: list[str] = []

    def job(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(name)

        return run

    await lanes.submit("a", job("a1"))
    await lanes.submit("a", job("a2"))
    await lanes.submit("b", job("b1"))

    async def both_at_the_gate() -> bool:
        return len(at_gate) == 2

    await until(both_at_the_gate, "lanes a and b waiting at the gate", timeout_s=5)
    assert ran == []
    assert lanes.drop_queued() == 3  # none had started
    assert lanes.buffered == 0
    await lanes.submit("b", job("b2"))
    gate_open.set()
    assert await lanes.wait_idle(1)
    assert ran == ["b2"]
    await lanes.close()


async def test_what_queued_behind_a_running_batch_runs_as_one_batch_of_at_most_max_batch() -> None:
    release = asyncio.Event()
    batches: list[list[str]] = []

    async def run(batch: Sequence[str]) -> None:
        batches.append([*batch])
        await release.wait()

    lanes: Lanes[str] = Lanes(run, max_buffered=100, max_running=10, max_batch=3)
    await lanes.submit("a", "a1")
    await asyncio.sleep(0)  # a1 starts alone
    for item in ("a2", "a3", "a4", "a5", "b1"):
        await lanes.submit(item[0], item)
    release.set()
    assert await lanes.wait_idle(1)
    assert batches == [["a1"], ["b1"], ["a2", "a3", "a4"], ["a5"]]
    assert lanes.buffered == 0
    await lanes.close()


async def test_a_running_batch_is_handed_back_whole_and_drop_queued_spares_it() -> None:
    async def run(batch: Sequence[str]) -> None:
        await asyncio.sleep(60)

    lanes: Lanes[str] = Lanes(run, max_buffered=100, max_running=10, max_batch=5)
    await lanes.submit("a", "a1")
    await asyncio.sleep(0)
    await lanes.submit("a", "a2")
    await lanes.submit("a", "a3")
    assert lanes.drop_queued() == 2  # a1 runs on
    await lanes.submit("a", "a4")
    assert await lanes.stop(grace_s=0.05) == 2  # a1 running, a4 queued
    assert lanes.buffered == 0


def test_acks_released_in_offset_order_only() -> None:
    acked: list[int] = []
    acks: OrderedAcks[str] = OrderedAcks()
    for offset in range(5):
        acks.track("p0", offset, lambda offset=offset: acked.append(offset), lambda: None)
    assert acks.finish("p0", 1) == 0
    assert acks.finish("p0", 3) == 0
    assert acked == []
    assert acks.unfinished("p0") == 0
    assert acks.finish("p0", 0) == 2
    assert acked == [0, 1]
    assert acks.finish("p0", 2) == 2
    assert acked == [0, 1, 2, 3]
    assert acks.unfinished("p0") == 4


def test_partitions_are_independent_and_forgettable() -> None:
    acked: list[tuple[str, int]] = []
    acks: OrderedAcks[str] = OrderedAcks()
    for partition in ("p0", "p1"):
        for offset in (10, 11):
            acks.track(partition, offset, lambda p=partition, o=offset: acked.append((p, o)), lambda: None)
    acks.finish("p1", 10)
    assert acked == [("p1", 10)]
    acks.forget(["p0"])
    assert acks.finish("p0", 10) == 0
    assert len(acks) == 1


def test_release_unstarted_gives_up_from_the_first_unstarted_event_on() -> None:
    acked: list[int] = []
    given_up: list[int] = []
    acks: OrderedAcks[str] = OrderedAcks()
    for offset in range(6):
        acks.track(
            "p0", offset, lambda offset=offset: acked.append(offset), lambda o=offset: given_up.append(o)
        )
    for offset in (0, 1, 3):  # 2 never started: 3 runs, but must not be acked past 2
        acks.start("p0", offset)
    assert acks.finish("p0", 1) == 0
    assert acks.release_unstarted() == 4
    assert sorted(given_up) == [2, 3, 4, 5]
    assert acks.finish("p0", 3) == 0
    assert acks.finish("p0", 0) == 2
    assert acked == [0, 1]
    assert acks.unfinished("p0") is None


def test_release_all_gives_up_everything_unacked() -> None:
    given_up: list[int] = []
    acks: OrderedAcks[str] = OrderedAcks()
    for offset in range(3):
        acks.track("p0", offset, lambda: None, lambda o=offset: given_up.append(o))
    acks.finish("p0", 0)
    assert acks.release_all() == 2
    assert sorted(given_up) == [1, 2]
    assert len(acks) == 0
