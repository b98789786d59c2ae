"""No `asyncio.wait_for` in the worker, the gateway, the tools, the dev stack, the bench or the tests.

On Python 3.11 `wait_for` returns the result instead of raising when the task is cancelled in the
loop iteration in which the awaited call completes: a loop around it (the handoff follower polls
every 200 ms) then runs on after a stop, and the worker never exits. `asyncio.timeout` raises the
cancellation in every case; the second test shows the difference on the interpreter in use.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "agents", "devstack", "bench", "tests")
MAX_POLLS = 100


def wait_for_calls() -> list[str]:
    """`file:line` of each call of `asyncio.wait_for` in the packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "wait_for"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "asyncio"
                    and path != Path(__file__)  # the race's demonstration below
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_module_waits_with_asyncio_wait_for() -> None:
    assert wait_for_calls() == []


async def stop_while_a_poll_completes(wait: Callable[[Coroutine[Any, Any, int]], Awaitable[int]]) -> bool:
    """Cancel a polling loop as one of its polls completes; whether the cancellation stopped it."""
    polls = 0

    async def poll() -> int:
        nonlocal polls
        polls += 1
        await asyncio.sleep(0)
        if polls == 2:
            asyncio.get_running_loop().call_soon(follower.cancel)  # the stop comes with the answer
        return 1

    async def follow() -> None:
        # Bounded: a loop that drops the stop ends after MAX_POLLS instead of spinning on. (An
        # unbounded one, cancelled again at the end, dropped that stop too: it spun through the
        # rest of the session and held the event loop's close past the last test's timeout.)
        while polls < MAX_POLLS:
            await wait(poll())

    follower = asyncio.create_task(follow())
    with contextlib.suppress(asyncio.CancelledError):
        await follower
    return follower.cancelled()


async def test_a_timeout_block_passes_a_stop_on_where_wait_for_drops_it() -> None:
    async def with_timeout(poll: Coroutine[Any, Any, int]) -> int:
        async with asyncio.timeout(10):
            return await poll

    async def with_wait_for(poll: Coroutine[Any, Any, int]) -> int:
        return await asyncio.wait_for(poll, 10)

    assert await stop_while_a_poll_completes(with_timeout)
    # Python 3.12 rewrote wait_for on asyncio.timeout; 3.11, the version the project ships, drops it.
    assert await stop_while_a_poll_completes(with_wait_for) == (sys.version_info >= (3, 12))
