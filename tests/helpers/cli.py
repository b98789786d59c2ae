"""`enricher` commands run in this process on a test's environment alone (none of this machine's
contract variables)."""

from __future__ import annotations

import asyncio
import os

from click.testing import Result
from typer.testing import CliRunner

from app.main import cli
from devstack.processes import CONTRACT_PREFIXES


async def invoke(env: dict[str, str], *args: str) -> Result:
    """`enricher ARGS` in a thread (the command runs its own event loop), with `env` as its settings."""
    environ: dict[str, str | None] = {k: None for k in os.environ if k.startswith(CONTRACT_PREFIXES)}
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=environ | env)
