"""Prompt templates: load and check `prompts/*.j2`, pick one for a message, render chat messages.

Templates run in Jinja2's immutable sandbox with StrictUndefined and see only plain data. The
customer's words reach only the user part: the system part (and a fallback's reply) is rendered
without `message.text` and `history`, and `<customer_message>` tags in customer text are
rewritten so the text cannot close its delimiter. The format is described in `prompt_format.py`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.errors import TemplateError
from app.prompts.file_format import (
    Conditions,
    PromptFile,
    Sample,
    body_problems,
    locale_chain,
    missing_value_problem,
    normalise,
    read_prompt_file,
    read_samples,
    syntax_problem,
    template_variables,
    value_paths,
)
from app.schemas import CustomerMessage, HistoryTurn, PromptRef
from app.tokens import ChatMessage

TEMPLATE_GLOB = "*.j2"
CATCH_ALL_NAME = "support_reply"
ROLES = {"customer": "user", "agent": "assistant"}
MAX_RENDER_CHARS = 50_000
MAX_RENDER_S = 1.0


@dataclass(frozen=True)
class PromptTemplate:
    """One loaded template file; `version` is a hash of its source, for tracing replies."""

    name: str
    version: str
    variant: str | None
    weight: float
    path: Path
    description: str
    temperature: float | None
    max_tokens: int | None
    conditions: Conditions
    is_fallback: bool


@dataclass(frozen=True)
class RenderedPrompt:
    """The chat messages a template produced: system, history turns, user.

    For a fallback template it is one `assistant` message holding the reply text, also `.text`.
    """

    template: PromptTemplate
    messages: list[ChatMessage]

    @property
    def text(self) -> str:
        """The content of the last message: for a fallback, the reply to send as it is."""
        return self.messages[-1]["content"]

    @property
    def ref(self) -> PromptRef:
        """What the reply's `prompt` object records."""
        return PromptRef(
            name=self.template.name, version=self.template.version, variant=self.template.variant
        )


@dataclass(frozen=True)
class _Entry:
    template: PromptTemplate
    compiled: jinja2.Template
    block_lines: Mapping[str, int]
    paths: Mapping[int, Sequence[tuple[str, str | None]]]


@dataclass(frozen=True)
class _Loaded:
    """What loading one file gave: the entry, or its problems and (if its front matter reads) its
    description, so the set's checks still count it."""

    entry: _Entry | None
    template: PromptTemplate | None
    problems: Sequence[TemplateError] = ()


class PromptLibrary:
    """The loaded, checked templates of one directory; immutable, so reload by loading anew."""

    def __init__(self, entries: Sequence[_Entry]) -> None:
        self._entries = {entry.template: entry for entry in entries}
        self.templates: tuple[PromptTemplate, ...] = tuple(entry.template for entry in entries)

    @classmethod
    def load(cls, directory: Path) -> PromptLibrary:
        """Load every template of `directory`; raise the first TemplateError if any is broken."""
        entries, problems = _load_all(directory)
        if problems:
            raise problems[0]
        return cls(entries)

    @staticmethod
    def check(directory: Path) -> tuple[list[PromptTemplate], list[TemplateError]]:
        """The templates that load and every problem found, each with `file:line`."""
        entries, problems = _load_all(directory)
        return [entry.template for entry in entries], problems

    def select(self, message: CustomerMessage, customer: Mapping[str, str]) -> PromptTemplate:
        """The most specific reply template for this message and customer.

        Templates naming the message's locale are tried first (`de-AT`, then `de`), then
        English ones (`locale: en` or no locale). Among matches the one with most conditions
        wins; its variants are chosen by a hash of the conversation id, so a conversation
        always gets the same variant.
        """
        return _choose([t for t in self.templates if not t.is_fallback], message, customer)

    def render(
        self,
        template: PromptTemplate,
        *,
        message: CustomerMessage,
        customer: Mapping[str, str],
        history: Sequence[HistoryTurn],
        now: datetime,
    ) -> RenderedPrompt:
        """Render `template` into chat messages; a TemplateError (with file:line) if it fails."""
        entry = self._entries.get(template)
        if entry is None:
            raise TemplateError(f"template {template.name!r} is not part of this library")
        return _render(entry, message, customer, history, now)

    def render_fallback(
        self, *, message: CustomerMessage, customer: Mapping[str, str], now: datetime
    ) -> RenderedPrompt:
        """The fallback reply for this message; send `.text` (its one `assistant` message)."""
        template = _choose([t for t in self.templates if t.is_fallback], message, customer)
        return self.render(template, message=message, customer=customer, history=(), now=now)


def _choose(
    candidates: Sequence[PromptTemplate], message: CustomerMessage, customer: Mapping[str, str]
) -> PromptTemplate:
    facts = {"channel": normalise(message.channel), "tier": normalise(customer.get("tier", ""))}
    for locale in locale_chain(message.locale):
        matching = [
            t
            for t in candidates
            if t.conditions.matches({**facts, "locale": locale})
            and (t.conditions.locale is not None or locale == "en")
        ]
        if matching:
            return _pick_variant(matching, message.conversation_id)
    raise TemplateError("no template matches and there is no catch-all template")


def _pick_variant(matching: Sequence[PromptTemplate], conversation_id: str) -> PromptTemplate:
    # Matches with equal specificity have identical conditions: they are variants of one template.
    best = max(t.conditions.specificity for t in matching)
    group = sorted((t for t in matching if t.conditions.specificity == best), key=lambda t: t.variant or "")
    digest = hashlib.sha256(f"{group[0].name}:{conversation_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(t.weight for t in group)
    for template in group:
        point -= template.weight
        if point < 0:
            return template
    return group[-1]


def _render(
    entry: _Entry,
    message: CustomerMessage,
    customer: Mapping[str, str],
    history: Sequence[HistoryTurn],
    now: datetime,
) -> RenderedPrompt:
    system_side, user_side = template_variables(message, customer, history, now)
    if entry.template.is_fallback:
        reply = _render_block(entry, "reply", system_side)
        return RenderedPrompt(entry.template, [ChatMessage(role="assistant", content=reply)])
    system = _render_block(entry, "system", system_side)
    turns = [ChatMessage(role=ROLES[turn.role], content=turn.text) for turn in history]
    user = _render_block(entry, "user", user_side)
    return RenderedPrompt(
        entry.template,
        [ChatMessage(role="system", content=system), *turns, ChatMessage(role="user", content=user)],
    )


def _render_block(entry: _Entry, block: str, variables: dict[str, Any]) -> str:
    deadline = time.monotonic() + MAX_RENDER_S
    parts: list[str] = []
    size = 0
    location = f"{entry.template.path}:{entry.block_lines[block]}"
    for chunk in _chunks(entry, block, variables):
        parts.append(chunk)
        size += len(chunk)
        if size > MAX_RENDER_CHARS:
            raise TemplateError(f"the {block} part renders to over {MAX_RENDER_CHARS:,} characters", location)
        if time.monotonic() > deadline:
            raise TemplateError(f"the {block} part takes over {MAX_RENDER_S}s to render", location)
    return "".join(parts).strip()


def _chunks(entry: _Entry, block: str, variables: dict[str, Any]) -> Iterator[str]:
    # Template code is written by editors: anything it raises is a problem of that template.
    template = entry.compiled
    try:
        yield from template.blocks[block](template.new_context(variables))
    except Exception as error:
        line = _template_line(error, template)
        path = entry.template.path
        if isinstance(error, jinja2.UndefinedError):
            reason = missing_value_problem(str(error), entry.paths.get(line, ()) if line else ())
        elif isinstance(error, jinja2.TemplateError):
            reason = str(error)
        else:
            reason = repr(error)
        raise TemplateError(reason, f"{path}:{line}" if line else str(path)) from error


def _template_line(error: BaseException, template: jinja2.Template) -> int | None:
    """The template line of the innermost traceback frame that runs the template's code."""
    line = None
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == template.filename:
            line = template.get_corresponding_lineno(trace.tb_lineno)
        trace = trace.tb_next
    return line


def _load_all(directory: Path) -> tuple[list[_Entry], list[TemplateError]]:
    if not directory.is_dir():
        return [], [TemplateError("not a directory", str(directory))]
    try:
        samples = read_samples(directory)
    except TemplateError as error:
        return [], [error]
    environment = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
    loaded = [_load_file(environment, path, samples) for path in sorted(directory.glob(TEMPLATE_GLOB))]
    entries = [file.entry for file in loaded if file.entry is not None]
    problems = [problem for file in loaded for problem in file.problems]
    # A file that fails still counts for the set's checks, so its failure is reported once, as
    # its own problem; one whose front matter cannot be read might be any template.
    described = [file.template for file in loaded if file.template is not None]
    complete = all(file.template is not None for file in loaded)
    return entries, problems + _set_problems(described, directory, complete=complete)


def _load_file(environment: jinja2.Environment, path: Path, samples: Mapping[Path, Sample]) -> _Loaded:
    """Parse, statically check and trial-render one template file; its problems if it fails."""
    try:
        file = read_prompt_file(path)
    except TemplateError as error:
        return _Loaded(None, None, [error])
    template = _describe(file)
    try:
        tree = environment.parse(file.body, path.name, str(path))
    except jinja2.TemplateSyntaxError as error:
        problem = syntax_problem(error, environment, file.body)
        return _Loaded(None, template, [TemplateError(problem, f"{path}:{error.lineno}")])
    found = body_problems(tree, file.front.kind, known=set(environment.globals))
    if found:
        return _Loaded(None, template, [TemplateError(message, f"{path}:{line}") for line, message in found])
    code = environment.compile(tree, path.name, str(path))
    entry = _Entry(
        template=template,
        compiled=environment.template_class.from_code(environment, code, environment.make_globals(None)),
        block_lines={block.name: block.lineno for block in tree.find_all(nodes.Block)},
        paths=value_paths(tree),
    )
    try:
        for sample_path, sample in samples.items():
            _trial_render(entry, sample, f"sample {sample_path.name}")
            bare = f"sample {sample_path.name} with no profile, history or metadata"
            _trial_render(entry, _bare(sample), bare)
    except TemplateError as error:
        return _Loaded(None, template, [error])
    return _Loaded(entry, template)


def _bare(sample: Sample) -> Sample:
    """The sample as a first-time customer without profile, history or metadata sends it."""
    message = sample.message.model_copy(update={"metadata": {}})
    return sample.model_copy(update={"customer": {}, "history": [], "message": message})


def _trial_render(entry: _Entry, sample: Sample, label: str) -> None:
    try:
        _render(entry, sample.message, sample.customer, sample.history, datetime.now(UTC))
    except TemplateError as error:
        raise TemplateError(f"{error.reason} (rendering {label})", error.location) from None


def _describe(file: PromptFile) -> PromptTemplate:
    front = file.front
    return PromptTemplate(
        name=front.name,
        version=hashlib.sha256(file.source.encode()).hexdigest()[:12],
        variant=front.variant,
        weight=front.weight,
        path=file.path,
        description=front.description,
        temperature=front.model.temperature,
        max_tokens=front.model.max_tokens,
        conditions=front.when,
        is_fallback=front.kind == "fallback",
    )


def _set_problems(
    templates: Sequence[PromptTemplate], directory: Path, *, complete: bool = True
) -> list[TemplateError]:
    """Problems of the set as a whole: required templates (only when `complete`, i.e. every file's
    front matter was read), clashing templates."""
    problems = []
    catch_alls = [t for t in templates if t.conditions.specificity[0] == 0]
    if complete and not any(t.name == CATCH_ALL_NAME and not t.is_fallback for t in catch_alls):
        problems.append(TemplateError(f"no `{CATCH_ALL_NAME}` template without `when:`", str(directory)))
    if complete and not any(t.is_fallback for t in catch_alls):
        problems.append(TemplateError("no `kind: fallback` template without `when:`", str(directory)))
    groups: dict[tuple[bool, Conditions], list[PromptTemplate]] = {}
    for template in templates:
        groups.setdefault((template.is_fallback, template.conditions), []).append(template)
    for group in groups.values():
        if len(group) > 1 and not _is_variant_set(group):
            clash = ", ".join(t.path.name for t in group)
            message = f"{clash} apply to the same messages: give them one `name:` and distinct `variant:`s"
            problems.append(TemplateError(message, str(group[-1].path)))
    return problems


def _is_variant_set(group: Sequence[PromptTemplate]) -> bool:
    variants = {t.variant for t in group}
    return len({t.name for t in group}) == 1 and None not in variants and len(variants) == len(group)
