"""The streamed answer with the customer's personal data put back, chunk by chunk (promise 7)."""

from __future__ import annotations

from app.llm.client import DeltaSink
from app.signals.pii import Masked


class RestoringSink:
    """A DeltaSink that puts the personal data back into the streamed answer before it is sent."""

    def __init__(self, sink: DeltaSink, masked: Masked) -> None:
        self._sink, self._masked = sink, masked
        self._restorer = masked.restorer()

    async def send(self, delta: str) -> None:
        """Send what can be restored now; a placeholder cut between two deltas waits for the next."""
        restored = self._restorer.feed(delta)
        if restored:
            await self._sink.send(restored)

    def restart(self) -> None:
        """The attempt failed: start over, forgetting what was held back."""
        self._restorer = self._masked.restorer()
        self._sink.restart()

    async def flush(self) -> None:
        """Send what is still held back, once the answer is complete."""
        rest = self._restorer.flush()
        if rest:
            await self._sink.send(rest)
