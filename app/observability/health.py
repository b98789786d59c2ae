"""Liveness, readiness and metrics pages on the worker's web port."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.llm.health import LLMHealth

LLM_PROBE_TTL_S = 10.0


class Health:
    """Decides readiness: partitions assigned, broker, Redis and the LLM reachable, the embedded
    models loaded, the help-center indexed."""

    def __init__(
        self,
        llm: LLMHealth,
        redis_answers: Callable[[], Awaitable[bool]],
        signals_problem: Callable[[], str | None] | None,
        knowledge_problem: Callable[[], str | None],
        assigned_partitions: Callable[[], int],
        unreadable_partitions: Callable[[], dict[str, str]],
    ) -> None:
        """`signals_problem`: None when no models are embedded (ENRICHER_SIGNALS=off);
        `knowledge_problem`: why the help-center's index cannot answer yet."""
        self._llm = llm
        self._redis_answers = redis_answers
        self._signals_problem = signals_problem
        self._knowledge_problem = knowledge_problem
        self._assigned_partitions = assigned_partitions
        self._unreadable_partitions = unreadable_partitions
        self._llm_reason: str | None = "not probed yet"
        self._llm_probed_at = float("-inf")

    async def _llm_problem(self) -> str | None:
        if (failing := self._llm.failing) is not None:
            return f"failing, new messages wait: {failing}"
        if time.monotonic() - self._llm_probed_at > LLM_PROBE_TTL_S:
            self._llm_reason = await self._llm.probe()
            self._llm_probed_at = time.monotonic()
        return self._llm_reason

    async def problems(self) -> dict[str, str]:
        """What keeps the worker from being ready; empty when it is ready."""
        found: dict[str, str] = {}
        if self._assigned_partitions() == 0:
            found["kafka"] = "no input partitions assigned yet"
        if unreadable := self._unreadable_partitions():
            found["partitions"] = "; ".join(f"{name} {why}" for name, why in unreadable.items())
        if not await self._redis_answers():
            found["redis"] = "not reachable"
        if (llm := await self._llm_problem()) is not None:
            found["llm"] = llm
        if self._signals_problem is not None and (problem := self._signals_problem()) is not None:
            found["signals"] = problem
        if (problem := self._knowledge_problem()) is not None:
            found["knowledge"] = problem
        return found


def attach_pages(app: faust.App, health: Health) -> None:
    """Serve /healthz, /readyz and /metrics on the faust web server."""

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        return self.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        problems = await health.problems()
        if problems:
            return self.json({"status": "not_ready", "reasons": problems}, status=503)
        return self.json({"status": "ready"})

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        # aiohttp adds the charset itself and refuses one inside the content type.
        content_type = CONTENT_TYPE_LATEST.split("; charset=")[0]
        return self.text(generate_latest().decode(), content_type=content_type)
