"""The prompt library in use now; a reload swaps it only when the new set loads cleanly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from app.errors import TemplateError
from app.observability import metrics
from app.prompts.file_format import SAMPLE_SUFFIXES
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary
from app.prompts.loading import TEMPLATE_GLOB

log = logging.getLogger(__name__)

FileStates = frozenset[tuple[str, int, int]]


def file_states(directory: Path) -> FileStates:
    """(name, mtime_ns, size) of every file a load reads: any edit, addition or removal changes it.

    The intents file counts too, as the handoff rules are checked against its intent names.
    """
    samples = (p for p in (directory / "samples").glob("*") if p.suffix in SAMPLE_SUFFIXES)
    rules = (directory / RULES_FILE, directory / INTENTS_FILE)
    states = set()
    for path in [*directory.glob(TEMPLATE_GLOB), *samples, *rules]:
        try:
            stat = path.stat()
        except OSError:  # absent, or removed since the glob: its absence is the change
            continue
        states.add((str(path), stat.st_mtime_ns, stat.st_size))
    return frozenset(states)


class PromptSource:
    """Holds the last good PromptLibrary of a directory."""

    def __init__(self, directory: Path, library: PromptLibrary) -> None:
        self.directory = directory
        self.current = library
        self._seen = file_states(directory)
        self._followers: list[Callable[[], object]] = []

    @classmethod
    def load(cls, directory: Path) -> PromptSource:
        """Load the directory; raises TemplateError when the initial set is broken."""
        return cls(directory, PromptLibrary.load(directory))

    def follow(self, reread: Callable[[], object]) -> None:
        """Call `reread` after each reload, in the reload's thread: for what else reads the directory
        (the embedded models read its intents file)."""
        self._followers.append(reread)

    def reload(self) -> bool:
        """Try the directory again; keep the last good set when it fails. True if swapped."""
        swapped = self._reload_templates()
        for reread in self._followers:
            reread()
        return swapped

    def _reload_templates(self) -> bool:
        # Noted before reading, so a file saved while we read shows up as a change next time.
        self._seen = file_states(self.directory)
        try:
            library = PromptLibrary.load(self.directory)
        except TemplateError as error:
            metrics.TEMPLATE_ERRORS.inc()
            log.error("template rejected; the last good set keeps serving", extra={"error": str(error)})
            return False
        self.current = library
        rules = len(library.handoff_rules.rules)
        log.info("templates reloaded", extra={"versions": self.version_summary(), "handoff_rules": rules})
        return True

    def version_summary(self) -> dict[str, str]:
        """The version of each template file in use, by file name, for logs."""
        return {template.path.name: template.version for template in self.current.templates}

    async def watch(self, interval_s: float = 0.5) -> None:
        """Reload whenever a template, sample, handoff rules or intents file changes, until cancelled.

        Checks every `interval_s`; loading runs in a thread, so a slow template never
        stalls the event loop.
        """
        while True:
            await asyncio.sleep(interval_s)
            if file_states(self.directory) != self._seen:
                await asyncio.to_thread(self.reload)
