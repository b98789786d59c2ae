"""A draft of one template file, tried: loaded with the rest of the directory as the worker would
load it, rendered for recent messages in a child process with CPU-time, memory and wall-clock
limits, and answered by the LLM next to the current file, side by side, with the tokens and cost of
both; the studio's LLM calls within a budget of their own.

The loader reads directories only, so the directory's templates, samples and handoff rules are
copied to a scratch directory, with the draft in place of its file, and loaded from there; the
template directory itself is never written. A loaded template needs no file, so the scratch directory
goes at once; its path stays to word problems with the directory's own paths.

Both sides' prompts are rendered as the worker renders them, personal data as placeholders
(`render_for`, which the studio's preview of one message uses too).

A draft is anyone's template code: it is compiled (where Jinja2 folds constant expressions)
and rendered apart from the gateway, so nothing it does can stall the gateway's event loop or
take its memory. The sandbox's own bounds (app/prompts/sandbox.py) make most drafts fail fast;
the limits here hold whatever they miss. The child is `python -m app.prompts.studio.draft`,
reading its job as JSON on stdin and writing its outcome as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from aiolimiter import AsyncLimiter

from app.errors import LLMError, TemplateError
from app.prices import PriceTable
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary, PromptTemplate, RenderedPrompt
from app.prompts.loading import TEMPLATE_GLOB, load_directory
from app.prompts.tools_file import FILE_NAME as TOOLS_FILE
from app.schemas import CustomerMessage, HistoryTurn, rfc3339, utc_now
from app.signals.pii import mask, prompt_texts
from app.tokens import ChatMessage

if TYPE_CHECKING:  # imported when used (see `Side.current`)
    from app.llm.client import CallOptions, LLMClient


CPU_LIMIT_S = 3  # of the child's CPU time, its start (about 0.3 s) included
WALL_LIMIT_S = 4.0  # the child is killed after this, waiting or not
MEMORY_LIMIT_BYTES = 512 * 2**20  # address space; the child needs under 200 MiB
LIMITS = (
    f"{CPU_LIMIT_S} s of CPU time, {WALL_LIMIT_S:g} s in all and {MEMORY_LIMIT_BYTES // 2**20} MiB of memory"
)
STUDIO_MAX_TOKENS = 1024  # a draft's answers, unless the current file allows more
HOUR_S = 3600.0

Passages = Sequence[Mapping[str, str | float]]
"""A message's help-center passages as the template variable `knowledge` holds them, best first."""


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


def render_for(
    library: PromptLibrary,
    template: PromptTemplate,
    message: CustomerMessage,
    customer: Mapping[str, str],
    history: Sequence[HistoryTurn],
    knowledge: Passages = (),
) -> RenderedPrompt:
    """`template` rendered for the message as the worker renders it, personal data in the message,
    its metadata, the history and the profile as placeholders, with the help-center's passages for
    it; TemplateError with file:line when it fails."""
    texts = prompt_texts(message, history, customer)
    asked, turns, profile = mask(texts, message.locale).prompt_parts(message, history, customer)
    return library.render(
        template, message=asked, customer=profile, history=turns, now=utc_now(), knowledge=knowledge
    )


def prompts_for(
    library: PromptLibrary,
    template: PromptTemplate,
    messages: Sequence[CustomerMessage],
    customers: Sequence[Mapping[str, str]],
    knowledge: Sequence[Passages],
    word: Callable[[TemplateError], TemplateError] = lambda error: error,
) -> list[list[ChatMessage] | str]:
    """Each message's prompt as `customers[i]` writes `messages[i]` (no history: a try shows the
    same to both sides), with `knowledge[i]`'s passages, or the error, as `word` puts it, that
    stopped it rendering."""
    prompts: list[list[ChatMessage] | str] = []
    for message, customer, passages in zip(messages, customers, knowledge, strict=True):
        try:
            prompts.append(render_for(library, template, message, customer, (), passages).messages)
        except TemplateError as error:
            prompts.append(str(word(error)))
    return prompts


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


@dataclass(frozen=True)
class Side:
    """One column: a template's version and model settings, and each message's prompt, or the
    error that stopped it rendering."""

    version: str
    options: CallOptions
    prompts: Sequence[Sequence[ChatMessage] | str]

    @classmethod
    def current(
        cls,
        library: PromptLibrary,
        template: PromptTemplate,
        messages: Sequence[CustomerMessage],
        customers: Sequence[Mapping[str, str]],
        knowledge: Sequence[Passages],
    ) -> Side:
        """The current file, rendered here for each message with its passages (no history: the same
        for both sides)."""
        # Imported when used, so the draft's child process, which imports this module too, starts
        # without openai (its start counts against its CPU time).
        from app.llm.client import CallOptions

        prompts = prompts_for(library, template, messages, customers, knowledge)
        options = CallOptions(
            temperature=template.temperature,
            max_tokens=template.max_tokens,
            response_format=template.response_format,
        )
        return cls(template.version, options, prompts)

    @classmethod
    def draft(cls, render: DraftRender, current: PromptTemplate) -> Side:
        """The draft as the child process rendered it; its `max_tokens` at most STUDIO_MAX_TOKENS
        or the current file's, whichever is more."""
        from app.llm.client import CallOptions

        cap = max(STUDIO_MAX_TOKENS, current.max_tokens or 0)
        options = CallOptions(temperature=render.temperature, max_tokens=min(render.max_tokens or cap, cap))
        return cls(render.version, options, render.prompts)

    async def answer(
        self, llm: LLMClient, prices: PriceTable, prompt: Sequence[ChatMessage] | str
    ) -> dict[str, Any]:
        """The LLM's reply to one message's prompt, or the error that stopped it."""
        if isinstance(prompt, str):
            return {"error": prompt}
        try:
            completion = await llm.complete(prompt, self.options)
        except LLMError as error:
            return {"error": f"the LLM did not answer: {error}"}
        usage = completion.usage
        return {
            "text": completion.text,
            "model": completion.model,
            "version": self.version,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_usd": prices.cost_usd(completion.model, usage),
        }


class CallBudget:
    """The studio's LLM calls: up to `per_hour` an hour (ENRICHER_STUDIO_MAX_CALLS_PER_HOUR), a
    burst of that many at most, then as the hour frees them."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._limiter = AsyncLimiter(per_hour, HOUR_S)

    async def take(self, calls: int) -> bool:
        """Count `calls` if the budget has them now (nothing is counted otherwise)."""
        if not self._limiter.has_capacity(calls):
            return False
        await self._limiter.acquire(calls)  # has the capacity: returns at once
        return True

    def refusal(self, calls: int) -> str:
        """Why `calls` more are refused, and about when they fit."""
        minutes = math.ceil(min(calls, self.per_hour) * HOUR_S / self.per_hour / 60)
        return (
            f"the studio's LLM budget ({self.per_hour} calls an hour, ENRICHER_STUDIO_MAX_CALLS_PER_HOUR) "
            f"has not {calls} calls left: try fewer messages, or again in up to {minutes} min"
        )


async def compare(
    llm: LLMClient, prices: PriceTable, sides: tuple[Side, Side], messages: Sequence[CustomerMessage]
) -> list[dict[str, Any]]:
    """For each message, the current side's and the draft side's answer; all calls at once (the
    client bounds how many are in flight, and its RPM and TPM caps hold). The message is shown
    with its personal data masked, as the LLM gets it."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            [group.create_task(side.answer(llm, prices, side.prompts[i])) for side in sides]
            for i in range(len(messages))
        ]
    return [
        {
            "message_id": m.message_id,
            "conversation_id": m.conversation_id,
            "customer_id": m.customer_id,
            "text": mask([m.text], m.locale).texts[0],
            "sent_at": rfc3339(m.sent_at) if m.sent_at else None,
            "current": mine.result(),
            "draft": theirs.result(),
        }
        for m, (mine, theirs) in zip(messages, tasks, strict=True)
    ]


if __name__ == "__main__":
    main()
