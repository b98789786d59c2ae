"""In-order acks: a finished event waits for every earlier one of its partition."""

from __future__ import annotations

from app.kafka.acks import OrderedAcks


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
