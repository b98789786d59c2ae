"""The LLM as the worker and its health pages see it: whether new calls wait, and why."""

from __future__ import annotations

from typing import Protocol


class LLMHealth(Protocol):
    """A read-only view of the LLM policy (`LLMClient`): its breaker's state and the provider's
    reachability. Its readers wait on it and report it; they never steer it."""

    @property
    def failing(self) -> str | None:
        """Why new calls are held (the LLM keeps failing: the breaker is open), or None."""

    async def admit(self) -> None:
        """Return when a new call may start: at once unless held; while held, when this call is
        the breaker's next probe or the LLM answers again."""

    async def probe(self) -> str | None:
        """None when the provider answers a model listing; otherwise a one-line reason."""
