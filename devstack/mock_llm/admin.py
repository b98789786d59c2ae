"""Client of the mock LLM's `/_mock/*` admin API, used by the tests and the benchmark."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import aiohttp

HTTP_TIMEOUT_S = 10.0


class MockAdmin:
    """Script answers, change latency and faults, and inspect what the mock LLM received."""

    def __init__(self, base_url: str) -> None:
        self._root = base_url.removesuffix("/").removesuffix("/v1")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))

    async def _call(self, method: str, path: str, body: object = None) -> Any:
        async with self._session.request(method, f"{self._root}/_mock/{path}", json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def script(self, *steps: dict[str, Any]) -> None:
        """Queue scripted answers, e.g. `{"status": 500}`, `{"status": 429, "retry_after": 1}`."""
        await self._call("POST", "script", {"steps": list(steps)})

    async def config(self, **changes: Any) -> dict[str, Any]:
        """Change latency and fault settings (`latency_ms`, `hang_rate`, ...); returns all of them."""
        result: dict[str, Any] = await self._call("PUT", "config", changes)
        return result

    async def requests(self) -> list[dict[str, Any]]:
        """The chat requests the mock received, oldest first."""
        result: list[dict[str, Any]] = (await self._call("GET", "requests"))["requests"]
        return result

    async def stats(self) -> dict[str, Any]:
        """Counters: requests, in_flight, max_in_flight, completed, errors."""
        result: dict[str, Any] = await self._call("GET", "stats")
        return result

    async def release(self) -> None:
        """Let held (`hold`) requests answer."""
        await self._call("POST", "release")

    async def reset(self) -> None:
        """Forget script, recorded requests and stats; release held requests."""
        await self._call("POST", "reset")

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()
