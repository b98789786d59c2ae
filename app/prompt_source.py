"""The prompt library in use now; a reload swaps it only when the new set loads cleanly."""

from __future__ import annotations

import logging
from pathlib import Path

from app import metrics
from app.errors import TemplateError
from app.prompts import PromptLibrary

log = logging.getLogger(__name__)


class PromptSource:
    """Holds the last good PromptLibrary of a directory."""

    def __init__(self, directory: Path, library: PromptLibrary) -> None:
        self.directory = directory
        self.current = library

    @classmethod
    def load(cls, directory: Path) -> PromptSource:
        """Load the directory; raises TemplateError when the initial set is broken."""
        return cls(directory, PromptLibrary.load(directory))

    def reload(self) -> bool:
        """Try the directory again; keep the last good set when it fails. True if swapped."""
        try:
            library = PromptLibrary.load(self.directory)
        except TemplateError as error:
            metrics.TEMPLATE_ERRORS.inc()
            log.error("template rejected; the last good set keeps serving", extra={"error": str(error)})
            return False
        self.current = library
        return True
