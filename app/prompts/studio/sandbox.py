"""A draft loaded and rendered in a child process with CPU-time, memory and wall-clock limits.

A draft is anyone's template code: it is compiled (where Jinja2 folds constant expressions)
and rendered apart from the gateway, so nothing it does can stall the gateway's event loop or
take its memory. The sandbox's own bounds (app/prompts/sandbox.py) make most drafts fail fast;
the limits here hold whatever they miss. The child is `python -m app.prompts.studio.sandbox`,
reading a `DraftJob` as JSON on stdin and writing its outcome as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from app.prompts.studio.catalog import Passages, prompts_for
from app.prompts.studio.draft import DraftRefused, Problem, load_draft
from app.schemas import CustomerMessage
from app.tokens import ChatMessage

CPU_LIMIT_S = 3  # of the child's CPU time, its start (about 0.3 s) included
WALL_LIMIT_S = 4.0  # the child is killed after this, waiting or not
MEMORY_LIMIT_BYTES = 512 * 2**20  # address space; the child needs under 200 MiB
LIMITS = (
    f"{CPU_LIMIT_S} s of CPU time, {WALL_LIMIT_S:g} s in all and {MEMORY_LIMIT_BYTES // 2**20} MiB of memory"
)


@dataclass(frozen=True)
class DraftRender:
    """The draft's template (version, model settings) and each message's prompt as it renders, or
    the error (`file:line`, with the directory's paths) that stopped it."""

    version: str
    temperature: float | None
    max_tokens: int | None
    prompts: list[list[ChatMessage] | str]


async def render_draft(
    directory: Path,
    file_name: str,
    text: str,
    messages: Sequence[CustomerMessage],
    customers: Sequence[Mapping[str, str]],
    knowledge: Sequence[Passages],
) -> DraftRender:
    """The draft of `directory/file_name` with `text`, loaded and rendered for each message (as
    `customers[i]` writes `messages[i]`, with `knowledge[i]`'s passages) in a child process;
    DraftRefused when it does not load, or when the child goes over its limits (`LIMITS`) or fails."""
    job = {
        "directory": str(directory),
        "file": file_name,
        "text": text,
        "messages": [message.model_dump(mode="json") for message in messages],
        "customers": [dict(customer) for customer in customers],
        "knowledge": [[dict(passage) for passage in passages] for passages in knowledge],
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(WALL_LIMIT_S):
            out, err = await child.communicate(json.dumps(job).encode())
    except TimeoutError:
        _refuse(file_name, f"loading and rendering the draft takes over {WALL_LIMIT_S:g} s")
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        # Killed at its CPU limit (SIGXCPU), out of memory, or failed: the draft is refused either way.
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {child.returncode}"]
        _refuse(file_name, f"the draft went over its limits ({LIMITS}): {last[0]}")
    outcome = json.loads(out)
    if "problems" in outcome:
        raise DraftRefused([Problem(**problem) for problem in outcome["problems"]])
    return DraftRender(**outcome)


def _refuse(file_name: str, reason: str) -> NoReturn:
    raise DraftRefused([Problem(file_name, reason, file_name, None)])


def _limit() -> None:
    """Hold this process to the limits: past its CPU time it gets SIGXCPU (and dies), past its
    memory a MemoryError."""
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S + 1))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _run(job: Mapping[str, Any]) -> dict[str, Any]:
    """The child's work: the draft loaded, then rendered for each message."""
    try:
        draft = load_draft(Path(job["directory"]), job["file"], job["text"])
    except DraftRefused as refused:
        return {"problems": [asdict(problem) for problem in refused.problems]}
    messages = [CustomerMessage.model_validate(document) for document in job["messages"]]
    prompts = prompts_for(
        draft.library, draft.template, messages, job["customers"], job["knowledge"], draft.relocated
    )
    template = draft.template
    return asdict(DraftRender(template.version, template.temperature, template.max_tokens, prompts))


def main() -> None:
    """The child: a job on stdin, its outcome on stdout."""
    _limit()
    json.dump(_run(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
