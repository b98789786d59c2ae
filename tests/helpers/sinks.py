"""A DeltaSink for tests: what an answer streamed, attempt by attempt."""

from __future__ import annotations


class Collected:
    """A DeltaSink that keeps the pieces of the current attempt and counts restarts."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.restarts = 0

    async def send(self, delta: str) -> None:
        self.deltas.append(delta)

    def restart(self) -> None:
        self.deltas.clear()
        self.restarts += 1
