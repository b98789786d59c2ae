"""The prompt library in use now; a reload swaps it only when the new set loads cleanly (app/last_good.py)."""

from __future__ import annotations

from pathlib import Path

from app.last_good import FileStates, LastGood, states_of
from app.prompts.file_format import SAMPLE_SUFFIXES
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary
from app.prompts.loading import TEMPLATE_GLOB
from app.prompts.tools_file import FILE_NAME as TOOLS_FILE


def file_states(directory: Path) -> FileStates:
    """(name, mtime_ns, size) of every file a load reads: any edit, addition or removal changes it.

    The intents file counts too, as the handoff rules are checked against its intent names, and
    the tools file, as templates name its tools.
    """
    samples = (p for p in (directory / "samples").glob("*") if p.suffix in SAMPLE_SUFFIXES)
    rules = (directory / RULES_FILE, directory / INTENTS_FILE, directory / TOOLS_FILE)
    return states_of([*directory.glob(TEMPLATE_GLOB), *samples, *rules])


class PromptSource(LastGood[PromptLibrary]):
    """Holds the last good PromptLibrary of a directory: templates, samples, handoff rules and intents."""

    def __init__(self, directory: Path, library: PromptLibrary) -> None:
        super().__init__(directory, library, PromptLibrary.load, file_states, "template")

    @classmethod
    def load(cls, directory: Path) -> PromptSource:
        """Load the directory; raises TemplateError when the initial set is broken."""
        return cls(directory, PromptLibrary.load(directory))

    def summary(self) -> dict[str, object]:
        """The versions and the handoff rules a reload brought."""
        return {"versions": self.version_summary(), "handoff_rules": len(self.current.handoff_rules.rules)}

    def version_summary(self) -> dict[str, str]:
        """The version of each template file in use, by file name, for logs."""
        return {template.path.name: template.version for template in self.current.templates}
