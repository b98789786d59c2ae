"""Template diagnostics: problems read off a template's Jinja2 syntax tree, said in plain words.

Loading checks each body with `body_problems` before any sample is rendered, so a problem in
a branch no sample takes is still found; `syntax_problem` and `missing_value_problem` turn
Jinja's own errors into what an editor should change.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence

import jinja2
from jinja2 import meta, nodes

from app.prompts.file_format import BLOCKS, KIND_VARIABLES, SYSTEM_SIDE_BLOCKS, VARIABLES

PAIRED_TAGS = ("if", "for", "block", "macro", "call", "filter", "with", "autoescape")


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
        attribute = _access(node)[1]
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
        target, attribute = _access(node)
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


def _access(node: nodes.Node) -> tuple[nodes.Node | None, str | None]:
    """For `x.y` or `x["y"]`: the node of `x` and the name "y" (None when not a constant)."""
    if isinstance(node, nodes.Getattr):
        return node.node, node.attr
    if isinstance(node, nodes.Getitem):
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        return node.node, key if isinstance(key, str) else None
    return None, None


def _is_blank(node: nodes.Node) -> bool:
    """Whether a top-level node is only the white space between parts."""
    return isinstance(node, nodes.Output) and all(
        isinstance(part, nodes.TemplateData) and not part.data.strip() for part in node.nodes
    )
