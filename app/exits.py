"""How an `enricher` command ends on a problem: one line on stderr and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from app.settings import SettingsError, load_settings

Loaded = TypeVar("Loaded")

EXIT_FAILURE = 1  # the command could not do its job
EXIT_CONFIG = 2  # a setting, an argument or a template is wrong: nothing was tried


def fail(line: str, code: int = EXIT_FAILURE, *, command: str = "enricher") -> NoReturn:
    """Print `command: line` to stderr and exit with `code`."""
    print(f"{command}: {line}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def settings_or_exit(load: Callable[[], Loaded] = load_settings) -> Loaded:  # type: ignore[assignment]
    """What `load` reads from the environment (the settings), or exit 2 with the one line
    naming the bad variable that its SettingsError gives."""
    try:
        return load()
    except SettingsError as error:
        fail(f"configuration error: {error}", EXIT_CONFIG)
