"""The `enricher` command line: worker, dev stack, sending a message, the mock LLM, prompt tools."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from app.settings import Settings, SettingsError, load_settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.callback()
def main() -> None:
    """stream-enricher: customer messages on Kafka in, LLM replies on Kafka out."""


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        _fail(str(error))


def _fail(line: str) -> NoReturn:
    print(f"enricher: configuration error: {line}", file=sys.stderr)
    raise typer.Exit(code=2)


@cli.command()
def worker() -> None:
    """Run one worker process, configured by the environment (see CONTRACT.md)."""
    from app.worker import run_worker

    run_worker(_settings_or_exit())


if __name__ == "__main__":
    cli()
