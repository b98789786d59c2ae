"""Loading and checking a template directory: each file parsed, checked and trial-rendered, then the set.

A file loads only if it renders with every sample, also as a first-time customer without
profile, orders, history or metadata would send it; the set must have its catch-all templates and no
two templates that apply to the same messages unless they are variants of one. The directory's
handoff rules (`handoff.yaml`) are part of the set: they are checked with it, and when there are
any, the set needs a handoff template. So are its tools (`tools.yaml`): a template may name only
tools the file declares.

Each body is checked on its Jinja2 syntax tree (`body_problems`) before any sample is rendered, so
a problem in a branch no sample takes is still found; `syntax_problem` turns Jinja's syntax errors
into what an editor should change. Each problem is said in plain words, with its `file:line`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from jinja2 import meta, nodes

from app.errors import TemplateError
from app.prompts.file_format import (
    BLOCKS,
    KIND_VARIABLES,
    SYSTEM_SIDE_BLOCKS,
    VARIABLES,
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
from app.prompts.sandbox import CompiledTemplate, access, render_chat, sandbox
from app.prompts.tools_file import FILE_NAME as TOOLS_FILE
from app.prompts.tools_file import NO_TOOLS, ToolSet, read_tools

TEMPLATE_GLOB = "*.j2"
CATCH_ALL_NAME = "support_reply"
PAIRED_TAGS = ("if", "for", "block", "macro", "call", "filter", "with", "autoescape")


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


def body_problems(tree: nodes.Template, kind: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, message) for each problem visible without rendering, even in branches samples skip.

    `known` are the names the environment provides besides the variables (`range`, `dict`, ...).
    A fallback and a handoff share their restrictions: one reply part, without customer text.
    """
    variables = VARIABLES | KIND_VARIABLES.get(kind, frozenset())
    return sorted([*_structure_problems(tree, kind), *_name_problems(tree, variables, known)])


def _structure_problems(tree: nodes.Template, kind: str) -> Iterator[tuple[int, str]]:
    """The body must consist of exactly the parts its kind has, as `{% block %}`s."""
    expected = BLOCKS[kind]
    parts = ", ".join(f"{{% block {name} %}}" for name in expected)
    for node in tree.body:
        if not isinstance(node, nodes.Block) and not _is_blank(node):
            yield node.lineno, f"text outside the template's parts is never used; move it into {parts}"
    blocks = {block.name: block for block in tree.find_all(nodes.Block)}
    for name, block in blocks.items():
        if name not in expected:
            yield block.lineno, f"unknown part {{% block {name} %}}; this template has {parts}"
    for name in expected:
        if name not in blocks:
            yield 1, f"missing part {{% block {name} %}} ... {{% endblock %}}"
    for name in SYSTEM_SIDE_BLOCKS & blocks.keys():
        yield from _customer_text_uses(blocks[name])


def _name_problems(
    tree: nodes.Template, variables: frozenset[str], known: set[str]
) -> Iterator[tuple[int, str]]:
    """Unknown variables (the kind's `variables` are known) and `_private` attributes (a sandbox
    escape is always one)."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attribute = access(node)[1]
        if attribute is not None and attribute.startswith("_"):
            yield node.lineno, f"`{attribute}`: names starting with '_' are not allowed"
    for variable in sorted(meta.find_undeclared_variables(tree) - variables - known):
        line = next(n.lineno for n in tree.find_all(nodes.Name) if n.name == variable)
        yield line, f"unknown variable `{variable}`; the variables are {', '.join(sorted(variables))}"


def _customer_text_uses(block: nodes.Block) -> Iterator[tuple[int, str]]:
    """Uses of `history` or `message.text` in a part rendered without customer text."""
    part = f"the {block.name} part"
    for name in block.find_all(nodes.Name):
        if name.name == "history":
            yield name.lineno, f"`history` is customer text and cannot be used in {part}"
    for node in block.find_all((nodes.Getattr, nodes.Getitem)):
        target, attribute = access(node)
        if isinstance(target, nodes.Name) and target.name == "message" and attribute == "text":
            yield node.lineno, f"`message.text` is customer text and cannot be used in {part}"


def syntax_problem(error: jinja2.TemplateSyntaxError, environment: jinja2.Environment, body: str) -> str:
    """Jinja's syntax error in plain words, for the commonest slips: an unclosed or stray tag.

    The error's line is where Jinja noticed the problem; the message says which line to look at.
    """
    message = error.message or "syntax error"
    innermost = re.search(r"innermost block that needs to be closed is '(\w+)'", message)
    found = re.match(r"Encountered unknown tag '(\w+)'", message)
    tag = found.group(1) if found else None
    if innermost and (tag is None or "nesting mistake" in message):
        opened = innermost.group(1)
        opened_at = _opening_line(environment, body, opened, error.lineno)
        which = (
            f"the {{% {opened} %}} on line {opened_at}"
            if opened_at
            else f"an {{% {opened} %}} above this line"
        )
        noticed = f"unknown tag '{tag}'" if tag else "the file ends first"
        return (
            f"{which} is not closed with {{% end{opened} %}}: add it where the text that depends on "
            f"it ends (Jinja: {noticed})"
        )
    if tag is not None and (tag.startswith("end") or tag in ("else", "elif")):
        opener = tag[3:] if tag.startswith("end") else "if"
        return (
            f"this {{% {tag} %}} has no {{% {opener} %}} to belong to: remove it, or add the missing "
            f"{{% {opener} ... %}} above it (Jinja: unknown tag '{tag}')"
        )
    if tag is not None:
        usual = "if, else, endif, for, endfor, block, endblock"
        return f"unknown instruction {{% {tag} %}}: check the spelling (the usual ones are {usual})"
    return message


def _opening_line(environment: jinja2.Environment, body: str, opened: str, before: int) -> int | None:
    """The line of the innermost `{% opened %}` still unclosed at line `before`, if lexing allows."""
    stack: list[tuple[str, int]] = []
    try:
        tokens = [(line, kind, value) for line, kind, value in environment.lex(body) if kind != "whitespace"]
    except jinja2.TemplateSyntaxError:
        return None
    for (line, kind, _), (_, next_kind, value) in itertools.pairwise(tokens):
        if line > before:
            break
        if kind != "block_begin" or next_kind != "name":
            continue
        if value in PAIRED_TAGS:
            stack.append((value, line))
        elif value.startswith("end") and stack and stack[-1][0] == value[3:]:
            stack.pop()
    return next((line for tag, line in reversed(stack) if tag == opened), None)


def _is_blank(node: nodes.Node) -> bool:
    """Whether a top-level node is only the white space between parts."""
    return isinstance(node, nodes.Output) and all(
        isinstance(part, nodes.TemplateData) and not part.data.strip() for part in node.nodes
    )
