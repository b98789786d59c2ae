"""A draft of one template file, loaded with the rest of the directory as the worker would load it.

The loader reads directories only, so the directory's templates, samples and handoff rules are
copied to a scratch directory, with the draft in place of its file, and loaded from there; the
template directory itself is never written. A loaded template needs no file, so the scratch directory
goes at once; its path stays to word problems with the directory's own paths.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.errors import TemplateError
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary, PromptTemplate
from app.prompts.loading import TEMPLATE_GLOB, load_directory
from app.prompts.tools_file import FILE_NAME as TOOLS_FILE


@dataclass(frozen=True)
class Problem:
    """One problem, as `enricher prompts check` reports it, with its file and line apart."""

    location: str
    reason: str
    file: str
    line: int | None

    @classmethod
    def of(cls, error: TemplateError) -> Problem:
        """The problem `error` reports."""
        path, _, line = error.location.rpartition(":")
        if not line.isdigit():
            path, line = error.location, ""
        return cls(error.location, error.reason, Path(path).name, int(line) if line else None)


class DraftRefused(Exception):
    """The draft does not load; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.location}: {p.reason}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Draft:
    """The directory's library with the draft in place of its file, and the draft's template."""

    library: PromptLibrary
    template: PromptTemplate
    scratch: Path
    directory: Path

    def relocated(self, error: TemplateError) -> TemplateError:
        """`error` (rendering the draft, say) as it reads with the directory's paths."""
        return _relocated(error, self.scratch, self.directory)


def _relocated(error: TemplateError, scratch: Path, directory: Path) -> TemplateError:
    return TemplateError(
        error.reason.replace(str(scratch), str(directory)),
        error.location.replace(str(scratch), str(directory)),
    )


def load_draft(directory: Path, file_name: str, text: str) -> Draft:
    """The draft of `directory/file_name` with `text`, loaded; DraftRefused when it, or the set it
    makes, has a problem (every problem of the set: a draft may clash with another file)."""
    if Path(file_name).name != file_name or not (directory / file_name).is_file():
        raise DraftRefused([Problem(file_name, "no such template file", file_name, None)])
    with tempfile.TemporaryDirectory(prefix="enricher-draft-") as name:
        scratch = Path(name)
        shutil.copytree(directory / "samples", scratch / "samples")
        # The handoff rules (and the intents they name) decide whether the set needs a handoff template;
        # the tools file, which tools a template may name.
        rule_files = [directory / name for name in (RULES_FILE, INTENTS_FILE, TOOLS_FILE)]
        for path in [*directory.glob(TEMPLATE_GLOB), *(path for path in rule_files if path.is_file())]:
            shutil.copyfile(path, scratch / path.name)
        (scratch / file_name).write_text(text, encoding="utf-8")
        loaded = load_directory(scratch)
        if loaded.problems:
            raise DraftRefused([Problem.of(_relocated(p, scratch, directory)) for p in loaded.problems])
        library = PromptLibrary(loaded.entries, loaded.handoff_rules)
        [template] = [t for t in library.templates if t.path.name == file_name]
        return Draft(library, template, scratch, directory)
