"""In-order acks: a finished event waits for every earlier one of its partition."""

from __future__ import annotations

from app.acks import OrderedAcks


def test_acks_released_in_offset_order_only() -> None:
    acked: list[int] = []
    acks: OrderedAcks[str] = OrderedAcks()
    for offset in range(5):
        acks.track("p0", offset, lambda offset=offset: acked.append(offset))
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
            acks.track(partition, offset, lambda p=partition, o=offset: acked.append((p, o)))
    acks.finish("p1", 10)
    assert acked == [("p1", 10)]
    acks.forget(["p0"])
    assert acks.finish("p0", 10) == 0
    assert len(acks) == 1
