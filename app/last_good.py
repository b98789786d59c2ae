"""A directory the support team edits, as last loaded cleanly: loaded again when its files change, the
last good load kept serving when the new one fails. The templates (app/prompts/library.py) and the
help-center (app/knowledge/index.py) are each one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from app.errors import TemplateError
from app.observability import metrics

log = logging.getLogger(__name__)

Loaded = TypeVar("Loaded")
FileStates = frozenset[tuple[str, int, int]]


def states_of(paths: Iterable[Path]) -> FileStates:
    """(name, mtime_ns, size) of each file of `paths` that exists: any edit, addition or removal
    changes it."""
    states = set()
    for path in paths:
        try:
            stat = path.stat()
        except OSError:  # absent, or removed since it was listed: its absence is the change
            continue
        states.add((str(path), stat.st_mtime_ns, stat.st_size))
    return frozenset(states)


class LastGood(Generic[Loaded]):
    """The last good load of a directory; `reload` swaps it only when the new load succeeds.

    `load` reads the directory (a TemplateError with `file:line` when something is broken);
    `states` lists what it reads, so that `watch` sees a change.
    """

    def __init__(
        self,
        directory: Path,
        current: Loaded,
        load: Callable[[Path], Loaded],
        states: Callable[[Path], FileStates],
        what: str,
    ) -> None:
        self.directory = directory
        self.current = current
        self._load = load
        self._states = states
        self._what = what
        self._seen = states(directory)
        self._followers: list[Callable[[], object]] = []

    def follow(self, reread: Callable[[], object]) -> None:
        """Call `reread` after each reload, in the reload's thread: for what else reads the directory
        (the embedded models read the template directory's intents file)."""
        self._followers.append(reread)

    def reload(self) -> bool:
        """Try the directory again; keep the last good load when it fails. True if swapped."""
        swapped = self._swap()
        for reread in self._followers:
            reread()
        return swapped

    def _swap(self) -> bool:
        # Noted before reading, so a file saved while we read shows up as a change next time.
        self._seen = self._states(self.directory)
        try:
            loaded = self._load(self.directory)
        except TemplateError as error:
            log.error(f"{self._what} rejected; the last good set keeps serving", extra={"error": str(error)})
            metrics.TEMPLATE_ERRORS.inc()  # after the line: whoever sees the count can read why
            return False
        self.current = loaded
        log.info(f"{self._what} reloaded", extra=self.summary())
        return True

    def summary(self) -> dict[str, object]:
        """What the reload's log line says of the new load."""
        return {}

    async def watch(self, interval_s: float = 0.5) -> None:
        """Reload whenever a file the load reads changes, until cancelled.

        Checks every `interval_s`; loading runs in a thread, so a slow load never stalls the event
        loop.
        """
        while True:
            await asyncio.sleep(interval_s)
            if self._states(self.directory) != self._seen:
                await asyncio.to_thread(self.reload)
