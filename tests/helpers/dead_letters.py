"""Dead letters written by a test, and `enricher dlq` run as a subprocess or in this process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from app.errors import ErrorKind
from app.main import cli
from app.schemas import DeadLetter, SourcePosition, rfc3339
from devstack.processes import CONTRACT_PREFIXES
from tests.helpers.kafka import RdRecord

ENRICHER = Path(sys.executable).with_name("enricher")
COMMAND_TIMEOUT_S = 60.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def message(message_id: str, conversation_id: str, text: str = "Where is my order?") -> bytes:
    """An input value the worker answers."""
    return json.dumps({"message_id": message_id, "conversation_id": conversation_id, "text": text}).encode()


def dead_letter(
    kind: ErrorKind,
    raw: bytes | None,
    *,
    source_topic: str,
    partition: int = 0,
    key: str | None = "c-1",
    failed_at: datetime | None = None,
) -> RdRecord:
    """A dead-letter record as the worker writes it, onto DLQ partition `partition`, in a trace."""
    source = SourcePosition(topic=source_topic, partition=partition, offset=0)
    letter = DeadLetter.build(kind, f"{kind} for the test", source, raw)
    if failed_at is not None:
        letter = letter.model_copy(update={"failed_at": rfc3339(failed_at)})
    headers = [("traceparent", TRACEPARENT.encode()), ("tracestate", b"vendor=1")]
    return key, letter.model_dump_json().encode(), partition, headers


def clean_environ(env: dict[str, str]) -> dict[str, str]:
    """This machine's environment without any contract variable, and the test's on top."""
    return {k: v for k, v in os.environ.items() if not k.startswith(CONTRACT_PREFIXES)} | env


async def run_dlq(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`enricher dlq ARGS` as a child process on the test's environment, in `cwd` (no `.env`)."""
    return await asyncio.to_thread(
        subprocess.run,
        [str(ENRICHER), "dlq", *args],
        env=clean_environ(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


async def invoke_dlq(env: dict[str, str], *args: str) -> Result:
    """`enricher dlq ARGS` in this process (in a thread: the command runs its own event loop)."""
    environ: dict[str, str | None] = {k: None for k in os.environ if k.startswith(CONTRACT_PREFIXES)}
    return await asyncio.to_thread(CliRunner().invoke, cli, ["dlq", *args], env=environ | env)
