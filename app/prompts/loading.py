"""Loading and checking a template directory: each file parsed, checked and trial-rendered, then the set.

A file loads only if it renders with every sample, also as a first-time customer without
profile, orders, history or metadata would send it; the set must have its catch-all templates and no
two templates that apply to the same messages unless they are variants of one. The directory's
handoff rules (`handoff.yaml`) are part of the set: they are checked with it, and when there are
any, the set needs a handoff template. So are its tools (`tools.yaml`): a template may name only
tools the file declares.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from app.errors import TemplateError
from app.prompts.diagnostics import body_problems, syntax_problem
from app.prompts.file_format import (
    Conditions,
    PromptTemplate,
    Sample,
    describe,
    front_matter_line,
    read_prompt_file,
    read_samples,
)
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.handoff_rules import NO_RULES, HandoffRules, read_rules
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.intents_file import read_intents
from app.prompts.rendering import CompiledTemplate, render_chat
from app.prompts.sandbox import sandbox
from app.prompts.tools_file import FILE_NAME as TOOLS_FILE
from app.prompts.tools_file import NO_TOOLS, ToolSet, read_tools

TEMPLATE_GLOB = "*.j2"
CATCH_ALL_NAME = "support_reply"


@dataclass(frozen=True)
class _Loaded:
    """What loading one file gave: the compiled template, or its problems and (if its front matter
    reads) its description, so the set's checks still count it."""

    entry: CompiledTemplate | None
    template: PromptTemplate | None
    problems: Sequence[TemplateError] = ()


@dataclass(frozen=True)
class LoadedSet:
    """What loading a directory gave: the templates that load, the handoff rules and tools that are
    right, and every problem found, each with `file:line`."""

    entries: list[CompiledTemplate]
    handoff_rules: HandoffRules
    problems: list[TemplateError]
    tools: ToolSet = NO_TOOLS


def load_directory(directory: Path) -> LoadedSet:
    """The templates, handoff rules and tools of `directory`, and every problem found in them or the set."""
    if not directory.is_dir():
        return LoadedSet([], NO_RULES, [TemplateError("not a directory", str(directory))])
    try:
        samples = read_samples(directory)
    except TemplateError as error:
        return LoadedSet([], NO_RULES, [error])
    rules, rule_problems = handoff_rules(directory)
    tools, tool_problems = read_tools(directory / TOOLS_FILE)
    environment = sandbox()
    loaded = [
        _load_file(environment, path, samples, tools.names) for path in sorted(directory.glob(TEMPLATE_GLOB))
    ]
    entries = [file.entry for file in loaded if file.entry is not None]
    problems = [problem for file in loaded for problem in file.problems]
    # A file that fails still counts for the set's checks, so its failure is reported once, as
    # its own problem; one whose front matter cannot be read might be any template.
    described = [file.template for file in loaded if file.template is not None]
    complete = all(file.template is not None for file in loaded)
    problems += rule_problems + tool_problems
    problems += _set_problems(described, directory, complete=complete, handoff=bool(rules.rules))
    return LoadedSet(entries, rules, problems, tools)


def handoff_rules(directory: Path) -> tuple[HandoffRules, list[TemplateError]]:
    """The directory's handoff rules (none without `handoff.yaml`), checked against the intents of
    its intents.yaml, and their problems."""
    intents = directory / INTENTS_FILE
    # Only the names: the intents file's own problems are reported where it is loaded.
    names = read_intents(intents)[0].names if intents.is_file() else ()
    return read_rules(directory / RULES_FILE, names)


def _load_file(
    environment: jinja2.Environment, path: Path, samples: Mapping[Path, Sample], tools: Collection[str]
) -> _Loaded:
    """Parse, statically check and trial-render one template file; its problems if it fails. `tools`
    are the names of the tools it may name."""
    try:
        file = read_prompt_file(path)
    except TemplateError as error:
        return _Loaded(None, None, [error])
    template = describe(file)
    unknown = [name for name in template.tools or () if name not in tools]
    if unknown:
        declared = f"it has {', '.join(sorted(tools))}" if tools else "it has none"
        message = f"front matter field `tools` names {unknown[0]!r}, not a tool of {TOOLS_FILE}: {declared}"
        where = f"{path}:{front_matter_line(file, 'tools')}"
        return _Loaded(None, template, [TemplateError(message, where)])
    try:
        tree = environment.parse(file.body, path.name, str(path))
    except jinja2.TemplateSyntaxError as error:
        problem = syntax_problem(error, environment, file.body)
        return _Loaded(None, template, [TemplateError(problem, f"{path}:{error.lineno}")])
    found = body_problems(tree, file.front.kind, known=set(environment.globals))
    if found:
        return _Loaded(None, template, [TemplateError(message, f"{path}:{line}") for line, message in found])
    entry = CompiledTemplate.compile(environment, template, tree)
    try:
        for sample_path, sample in samples.items():
            _trial_render(entry, sample, f"sample {sample_path.name}")
            bare = f"sample {sample_path.name} with no profile, history or metadata"
            _trial_render(entry, _bare(sample), bare)
    except TemplateError as error:
        return _Loaded(None, template, [error])
    return _Loaded(entry, template)


def _bare(sample: Sample) -> Sample:
    """The sample as a first-time customer without profile, orders, history or metadata sends it,
    with no help-center passage found."""
    message = sample.message.model_copy(update={"metadata": {}})
    bare = {"customer": {}, "history": [], "message": message, "orders": [], "knowledge": []}
    return sample.model_copy(update=bare)


def _trial_render(entry: CompiledTemplate, sample: Sample, label: str) -> None:
    try:
        render_chat(
            entry,
            sample.message,
            sample.customer,
            sample.history,
            datetime.now(UTC),
            sample.signals,
            orders=sample.orders,
            knowledge=sample.passages(),
        )
    except TemplateError as error:
        raise TemplateError(f"{error.reason} (rendering {label})", error.location) from None


def _set_problems(
    templates: Sequence[PromptTemplate], directory: Path, *, complete: bool = True, handoff: bool = False
) -> list[TemplateError]:
    """Problems of the set as a whole: required templates (only when `complete`, i.e. every file's
    front matter was read; a handoff template only when there are `handoff` rules), clashing
    templates."""
    problems = []
    catch_alls = [t for t in templates if t.conditions.specificity[0] == 0]
    if complete and not any(t.name == CATCH_ALL_NAME and t.kind == "reply" for t in catch_alls):
        problems.append(TemplateError(f"no `{CATCH_ALL_NAME}` template without `when:`", str(directory)))
    if complete and not any(t.kind == "fallback" for t in catch_alls):
        problems.append(TemplateError("no `kind: fallback` template without `when:`", str(directory)))
    if complete and handoff and not any(t.kind == "handoff" for t in catch_alls):
        message = f"{RULES_FILE} has rules, so a `kind: handoff` template without `when:` is needed"
        problems.append(TemplateError(message, str(directory)))
    groups: dict[tuple[str, Conditions], list[PromptTemplate]] = {}
    for template in templates:
        groups.setdefault((template.kind, template.conditions), []).append(template)
    for group in groups.values():
        if len(group) > 1 and not _is_variant_set(group):
            clash = ", ".join(t.path.name for t in group)
            message = f"{clash} apply to the same messages: give them one `name:` and distinct `variant:`s"
            problems.append(TemplateError(message, str(group[-1].path)))
    return problems


def _is_variant_set(group: Sequence[PromptTemplate]) -> bool:
    variants = {t.variant for t in group}
    return len({t.name for t in group}) == 1 and None not in variants and len(variants) == len(group)
