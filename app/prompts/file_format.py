"""The prompt file format read by `library.py`: YAML front matter, a Jinja2 body, sample data.

A template is a file `prompts/<anything>.j2`:

    ---
    name: support_reply              # required
    description: Default reply.      # required
    kind: reply                      # or `fallback`: sent as the reply when the LLM cannot answer
    variant: warm                    # optional A/B variant: same name and `when`, other variant
    weight: 1                        # optional share of conversations for this variant
    model: {temperature: 0.3, max_tokens: 400}          # optional
    when: {channel: chat, locale: de, tier: gold}       # optional, each key optional
    ---
    {% block system %}...{% endblock %}      a fallback has one {% block reply %} instead
    {% block user %}...{% endblock %}

Variables (plain data only; a missing optional message field is ""):

    customer   profile fields, str -> str, possibly empty            every part
    message    message_id, conversation_id, customer_id, channel,     every part
               locale, sent_at, metadata; and `text`                  `text` in the user part only
    metadata   the message's metadata object                           every part
    now        the current time, RFC 3339                              every part
    history    [{role: "customer" | "agent", text, at}], oldest first  the user part only

Samples, `prompts/samples/*.yaml` (or `.json`), hold a `customer`, a `history` and a `message`;
every template is rendered with each of them when it is loaded.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import yaml
from jinja2 import meta, nodes
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import TemplateError
from app.schemas import CustomerMessage, HistoryTurn, rfc3339
from app.validation import one_line, where

FENCE = "---"
VARIABLES = frozenset({"customer", "history", "message", "metadata", "now"})
BLOCKS = {"reply": ("system", "user"), "fallback": ("reply",)}
SYSTEM_SIDE_BLOCKS = frozenset({"system", "reply"})
DELIMITER_TAG = re.compile(r"<\s*(/?)\s*customer_message\s*>", re.IGNORECASE)
SAMPLE_SUFFIXES = (".yaml", ".yml", ".json")
PAIRED_TAGS = ("if", "for", "block", "macro", "call", "filter", "with", "autoescape")
FIELD_PROBLEMS = {
    "missing": "is required",
    "extra_forbidden": "is not a known field (check the spelling)",
    "string_type": "must be text: put it in quotes",
    "string_pattern_mismatch": "may only use letters, digits, '_' and '-'",
}


def normalise(value: str) -> str:
    """Condition values compare case-insensitively; locales treat `de_AT` like `de-at`."""
    return value.strip().casefold().replace("_", "-")


def locale_chain(locale: str) -> list[str]:
    """The locales tried in order for a message: `de-AT` gives `de-at`, `de`, `en`."""
    full = normalise(locale)
    return list(dict.fromkeys(tag for tag in (full, full.split("-")[0], "en") if tag))


class Conditions(BaseModel):
    """The `when:` part: a template applies when every condition set here matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: Annotated[str, Field(min_length=1)] | None = None
    locale: Annotated[str, Field(min_length=1)] | None = None
    tier: Annotated[str, Field(min_length=1)] | None = None

    @field_validator("channel", "locale", "tier")
    @classmethod
    def _normalised(cls, value: str | None) -> str | None:
        return None if value is None else normalise(value)

    def matches(self, facts: dict[str, str]) -> bool:
        """Whether each set condition equals the (normalised) fact of the same name."""
        return all(facts.get(key) == value for key, value in self.model_dump().items() if value is not None)

    @property
    def specificity(self) -> tuple[int, bool, bool, bool]:
        """Sort key: more conditions win; on a tie tier beats locale beats channel."""
        tier, locale, channel = (v is not None for v in (self.tier, self.locale, self.channel))
        return (tier + locale + channel, tier, locale, channel)


class ModelSettings(BaseModel):
    """The `model:` part: sampling settings passed to the LLM with this template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None


class FrontMatter(BaseModel):
    """The YAML between the two `---` lines at the top of a template file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    description: Annotated[str, Field(min_length=1)]
    kind: Literal["reply", "fallback"] = "reply"
    variant: str | None = None
    weight: Annotated[float, Field(gt=0)] = 1.0
    model: ModelSettings = Field(default_factory=ModelSettings)
    when: Conditions = Field(default_factory=Conditions)


@dataclass(frozen=True)
class PromptFile:
    """A parsed template file; `body` is padded with blank lines so its line numbers are the file's."""

    path: Path
    source: str
    front: FrontMatter
    body: str


class Sample(BaseModel):
    """Example data templates are rendered with when they are loaded and previewed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer: dict[str, str] = Field(default_factory=dict)
    history: list[HistoryTurn] = Field(default_factory=list)
    message: CustomerMessage


def read_text(path: Path) -> str:
    """A file's text as UTF-8, or a TemplateError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TemplateError(f"cannot read: {error}", str(path)) from None


def read_prompt_file(path: Path) -> PromptFile:
    """Split a template file into validated front matter and its Jinja2 body."""
    source = read_text(path)
    lines = source.split("\n")
    if lines[0].strip() != FENCE:
        raise TemplateError("the file must start with a '---' line opening the front matter", f"{path}:1")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == FENCE), None)
    if end is None:
        raise TemplateError("the front matter is not closed by a second '---' line", f"{path}:1")
    front = _front_matter(path, "\n".join(lines[1:end]))
    body = "\n" * (end + 1) + "\n".join(lines[end + 1 :])
    return PromptFile(path=path, source=source, front=front, body=body)


def _front_matter(path: Path, text: str) -> FrontMatter:
    # The front matter starts on the file's line 2 and YAML counts lines from 0.
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 2 if error.problem_mark else 1
        raise TemplateError(f"front matter is not valid YAML: {error.problem}", f"{path}:{line}") from None
    if not isinstance(document, dict):
        raise TemplateError("front matter must be `key: value` lines", f"{path}:1")
    try:
        return FrontMatter.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        field = where(first["loc"])
        problem = FIELD_PROBLEMS.get(first["type"], first["msg"])
        # A missing key has no line of its own: point at the opening '---' (line 1).
        line = _key_lines(text).get(str(first["loc"][0]), -1) + 2
        raise TemplateError(f"front matter field `{field}` {problem}", f"{path}:{line}") from None


def _key_lines(text: str) -> dict[str, int]:
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {key.value: key.start_mark.line for key, _ in node.value if isinstance(key, yaml.ScalarNode)}


def body_problems(tree: nodes.Template, kind: str, known: set[str]) -> list[tuple[int, str]]:
    """(line, message) for each problem visible without rendering, even in branches samples skip.

    `known` are the names the environment provides besides the variables (`range`, `dict`, ...).
    """
    return sorted([*_structure_problems(tree, kind), *_name_problems(tree, known)])


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


def _name_problems(tree: nodes.Template, known: set[str]) -> Iterator[tuple[int, str]]:
    """Unknown variables and `_private` attributes (a sandbox escape is always one)."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        attribute = _access(node)[1]
        if attribute is not None and attribute.startswith("_"):
            yield node.lineno, f"`{attribute}`: names starting with '_' are not allowed"
    for variable in sorted(meta.find_undeclared_variables(tree) - VARIABLES - known):
        line = next(n.lineno for n in tree.find_all(nodes.Name) if n.name == variable)
        yield line, f"unknown variable `{variable}`; the variables are {', '.join(sorted(VARIABLES))}"


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
        where = _opening_line(environment, body, opened, error.lineno)
        which = f"the {{% {opened} %}} on line {where}" if where else f"an {{% {opened} %}} above this line"
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


def value_paths(tree: nodes.Template) -> dict[int, list[tuple[str, str | None]]]:
    """By line, each `x.y` / `x["y"]` read as (path of `x`, "y"); "y" is None when it is computed.

    Used to name the value a render found missing: Jinja only says `'dict object' has no attribute`.
    """
    found: dict[int, list[tuple[str, str | None]]] = {}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target, attribute = _access(node)
        path = _dotted(target)
        if path is not None:
            found.setdefault(node.lineno, []).append((path, attribute))
    return found


def missing_value_problem(reason: str, paths: Sequence[tuple[str, str | None]]) -> str:
    """Jinja's "undefined" message (for one template line) as what to do about it."""
    wanted = re.search(r"has no attribute '([^']+)'", reason)
    expression = None
    if wanted:
        key = wanted.group(1)
        exact = {f"{path}.{key}" for path, attribute in paths if attribute == key}
        computed = {f"{path}.{key}" for path, attribute in paths if attribute is None}
        candidates = exact or computed
        expression = candidates.pop() if len(candidates) == 1 else None
    if expression is None:
        return (
            f"a value on this line is missing ({reason}): values that may be missing need a guard, "
            "{% if ... is defined %} ... {% endif %}"
        )
    whose = {"customer": "some customers", "metadata": "some messages", "message": "some messages"}
    root = expression.split(".")[0]
    missing = f"may be missing for {whose[root]}" if root in whose else "has no value here"
    return f"`{expression}` {missing}: wrap it in {{% if {expression} is defined %}} … {{% endif %}}"


def _dotted(node: nodes.Node | None) -> str | None:
    """`customer` or `message.metadata` for a variable or a chain of constant attributes; else None."""
    if isinstance(node, nodes.Name):
        return node.name
    if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
        return None
    target, attribute = _access(node)
    prefix = _dotted(target)
    return f"{prefix}.{attribute}" if prefix is not None and attribute is not None else None


def _customer_text_uses(block: nodes.Block) -> Iterator[tuple[int, str]]:
    where = f"the {block.name} part"
    for name in block.find_all(nodes.Name):
        if name.name == "history":
            yield name.lineno, f"`history` is customer text and cannot be used in {where}"
    for node in block.find_all((nodes.Getattr, nodes.Getitem)):
        target, attribute = _access(node)
        if isinstance(target, nodes.Name) and target.name == "message" and attribute == "text":
            yield node.lineno, f"`message.text` is customer text and cannot be used in {where}"


def _access(node: nodes.Node) -> tuple[nodes.Node | None, str | None]:
    """For `x.y` or `x["y"]`: the node of `x` and the name "y" (None when not a constant)."""
    if isinstance(node, nodes.Getattr):
        return node.node, node.attr
    if isinstance(node, nodes.Getitem):
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        return node.node, key if isinstance(key, str) else None
    return None, None


def _is_blank(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Output) and all(
        isinstance(part, nodes.TemplateData) and not part.data.strip() for part in node.nodes
    )


def template_variables(
    message: CustomerMessage,
    customer: Mapping[str, str],
    history: Sequence[HistoryTurn],
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The variables of the system side (system part, fallback reply) and of the user part."""
    metadata = json.loads(json.dumps(message.metadata, default=str))
    fields = {
        "message_id": message.message_id,
        "conversation_id": message.conversation_id,
        "customer_id": message.customer_id or "",
        "channel": message.channel,
        "locale": message.locale,
        "sent_at": rfc3339(message.sent_at) if message.sent_at else "",
        "metadata": metadata,
    }
    profile = {str(key): str(value) for key, value in customer.items()}
    system_side = {"customer": profile, "message": fields, "metadata": metadata, "now": rfc3339(now)}
    turns = [{"role": t.role, "text": _neutralise(t.text), "at": t.at} for t in history]
    user_side = {
        **system_side,
        "message": {**fields, "text": _neutralise(message.text)},
        "history": turns,
    }
    return system_side, user_side


def _neutralise(text: str) -> str:
    """Rewrite `<customer_message>` tags in customer text so it cannot close the delimiter."""
    return DELIMITER_TAG.sub(r"[\1customer_message]", text)


def read_samples(directory: Path) -> dict[Path, Sample]:
    """Every sample in `directory/samples`; a TemplateError if there is none or one is broken."""
    folder = directory / "samples"
    paths = sorted(p for p in folder.glob("*") if p.suffix in SAMPLE_SUFFIXES)
    if not paths:
        raise TemplateError("no sample data: add a samples/*.yaml file", str(folder))
    return {path: _read_sample(path) for path in paths}


def _read_sample(path: Path) -> Sample:
    try:
        return Sample.model_validate(yaml.safe_load(read_text(path)))
    except yaml.YAMLError as error:
        raise TemplateError(f"not valid YAML or JSON: {error}", str(path)) from None
    except ValidationError as error:
        raise TemplateError(f"invalid sample: {one_line(error)}", str(path)) from None
