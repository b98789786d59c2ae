"""Rendering a template into chat messages in the sandbox: Jinja2's immutable sandbox, with every
operand and every loop bounded, and each part's output within size and time limits.

Templates run in the bounded sandbox (`sandbox()`) with StrictUndefined and see only plain data.
The customer's words reach only the user part: the system part (and the reply of a fallback or
handoff) is rendered without `message.text` and `history`, and `<customer_message>` tags in
customer text are rewritten so the text cannot close its delimiter. A value a render finds
missing is named as the template writes it (`value_paths`, `missing_value_problem`).

Jinja2's sandbox decides what a template may reach, not how much work it does: `9**(9**8)` or
`'a' * 2**34` is computed whole, at compile time even (Jinja2 folds constant expressions), and
a loop that prints nothing runs as long as it likes, since the size and time limits of a render
(`MAX_RENDER_CHARS`, `MAX_RENDER_S`) look only between output chunks. Here:

- `**`, `*`, `+` and `%` go through `call_binop`, which refuses a number over `MAX_INT_BITS`
  bits, a string or list over `MAX_ITEMS` items, or a format width over `MAX_ITEMS`, before
  computing it; an intercepted operator is never folded at compile time. What `~` joins, and
  what a filter or a function returns, is refused over `MAX_ITEMS` items.
- A render has a budget of `MAX_STEPS` steps (`budgeted()`): each iteration of a `for` loop
  (recursive ones too), and each item of what a filter or a method is given, costs one; a
  recursive loop's `loop(...)` costs `RECURSION_STEPS`. `lipsum` is not there. A filter
  refuses to run outside a render, so none is folded at compile time either.
- `range` is Jinja2's, capped at `jinja2.sandbox.MAX_RANGE` (100,000) items; its items are steps.

A bound exceeded raises `BoundExceeded` (a `jinja2.sandbox.SecurityError`), which rendering
reports as the template's TemplateError at its line.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.errors import TemplateError
from app.prompts.file_format import SAMPLE_REASON, PromptTemplate
from app.schemas import CustomerMessage, HistoryTurn, Order, PromptRef, rfc3339
from app.tokens import ChatMessage

PINNED = ("jinja2",)  # its code generator's visit_For and visit_Concat are extended here
MAX_INT_BITS = 4096  # about 1,230 decimal digits
MAX_ITEMS = 100_000  # characters of a string, items of a list an operator makes; a format width
MAX_STEPS = 1_000_000  # loop iterations and items handled per render: well under a second
RECURSION_STEPS = 100  # a recursive loop's `loop(...)`: a call and a loop of its own, with its output
# Filters and string methods whose number arguments are the size of what they make.
WIDTH_FILTERS = frozenset({"center", "indent", "truncate", "wordwrap"})
WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# A %-format conversion's width and precision; a width of `*` is taken from the arguments.
PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")
BRACE_FIELD = re.compile(r"\{[^{}]*\}|\{[^{}]*\{")

ROLES = {"customer": "user", "agent": "assistant"}
DELIMITER_TAG = re.compile(r"<\s*(/?)\s*customer_message\s*>", re.IGNORECASE)
MAX_RENDER_CHARS = 50_000
MAX_RENDER_S = 1.0


@dataclass(frozen=True)
class CompiledTemplate:
    """A template ready to render, with the line facts its error messages need."""

    template: PromptTemplate
    compiled: jinja2.Template
    block_lines: Mapping[str, int]
    paths: Mapping[int, Sequence[tuple[str, str | None]]]

    @classmethod
    def compile(
        cls, environment: jinja2.Environment, template: PromptTemplate, tree: nodes.Template
    ) -> CompiledTemplate:
        """Compile the parsed body of `template` in `environment`."""
        code = environment.compile(tree, template.path.name, str(template.path))
        return cls(
            template=template,
            compiled=environment.template_class.from_code(environment, code, environment.make_globals(None)),
            block_lines={block.name: block.lineno for block in tree.find_all(nodes.Block)},
            paths=value_paths(tree),
        )


@dataclass(frozen=True)
class RenderedPrompt:
    """The chat messages a template produced: system, history turns, user.

    For a fallback or handoff template it is one `assistant` message holding the reply text, also
    `.text`.
    """

    template: PromptTemplate
    messages: list[ChatMessage]

    @property
    def text(self) -> str:
        """The content of the last message: for a fallback or handoff, the reply to send as it is."""
        return self.messages[-1]["content"]

    @property
    def ref(self) -> PromptRef:
        """What the reply's `prompt` object records."""
        return PromptRef(
            name=self.template.name, version=self.template.version, variant=self.template.variant
        )


def render_chat(
    entry: CompiledTemplate,
    message: CustomerMessage,
    customer: Mapping[str, str],
    history: Sequence[HistoryTurn],
    now: datetime,
    signals: Mapping[str, Any] | None = None,
    reason: Mapping[str, str] | None = None,
    *,
    orders: Sequence[Order] = (),
    knowledge: Sequence[Mapping[str, str | float]] = (),
) -> RenderedPrompt:
    """Render `entry` for this message; a TemplateError (with file:line) if it fails or is too big or slow.

    A handoff template also sees `reason` (`{"kind", "detail"}`; without one, a sample reason).
    """
    system_side, user_side = template_variables(
        message, customer, history, now, signals, orders=orders, knowledge=knowledge
    )
    if entry.template.kind == "handoff":
        system_side["reason"] = dict(reason or SAMPLE_REASON)
    if entry.template.sent_as_is:
        reply = _render_block(entry, "reply", system_side)
        return RenderedPrompt(entry.template, [ChatMessage(role="assistant", content=reply)])
    system = _render_block(entry, "system", system_side)
    turns = [ChatMessage(role=ROLES[turn.role], content=turn.text) for turn in history]
    user = _render_block(entry, "user", user_side)
    return RenderedPrompt(
        entry.template,
        [ChatMessage(role="system", content=system), *turns, ChatMessage(role="user", content=user)],
    )


def template_variables(
    message: CustomerMessage,
    customer: Mapping[str, str],
    history: Sequence[HistoryTurn],
    now: datetime,
    signals: Mapping[str, Any] | None = None,
    *,
    orders: Sequence[Order] = (),
    knowledge: Sequence[Mapping[str, str | float]] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The variables of the system side (system part, fallback or handoff reply) and of the user part;
    `signals` is what the embedded models found ({} when they did not run), `orders` the customer's
    recent orders, newest first, `knowledge` the help-center's passages for the message, best first."""
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
    system_side = {
        "customer": profile,
        "message": fields,
        "metadata": metadata,
        "now": rfc3339(now),
        "signals": dict(signals or {}),
        # A field the order lacks is "", like a missing message field: templates test it with `if`.
        "orders": [{k: "" if v is None else v for k, v in o.as_record().items()} for o in orders],
        "knowledge": [dict(passage) for passage in knowledge],
    }
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


def _render_block(entry: CompiledTemplate, block: str, variables: dict[str, Any]) -> str:
    deadline = time.monotonic() + MAX_RENDER_S
    parts: list[str] = []
    size = 0
    location = f"{entry.template.path}:{entry.block_lines[block]}"
    with budgeted():  # the operand and loop bounds hold between chunks too (BoundedSandbox)
        for chunk in _chunks(entry, block, variables):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_RENDER_CHARS:
                raise TemplateError(
                    f"the {block} part renders to over {MAX_RENDER_CHARS:,} characters", location
                )
            if time.monotonic() > deadline:
                raise TemplateError(f"the {block} part takes over {MAX_RENDER_S}s to render", location)
    return "".join(parts).strip()


def _chunks(entry: CompiledTemplate, block: str, variables: dict[str, Any]) -> Iterator[str]:
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


def value_paths(tree: nodes.Template) -> dict[int, list[tuple[str, str | None]]]:
    """By line, each `x.y` / `x["y"]` read as (path of `x`, "y"); "y" is None when it is computed.

    Used to name the value a render found missing: Jinja only says `'dict object' has no attribute`.
    """
    found: dict[int, list[tuple[str, str | None]]] = {}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target, attribute = access(node)
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
    target, attribute = access(node)
    prefix = _dotted(target)
    return f"{prefix}.{attribute}" if prefix is not None and attribute is not None else None


def access(node: nodes.Node) -> tuple[nodes.Node | None, str | None]:
    """For `x.y` or `x["y"]`: the node of `x` and the name "y" (None when not a constant)."""
    if isinstance(node, nodes.Getattr):
        return node.node, node.attr
    if isinstance(node, nodes.Getitem):
        key = node.arg.value if isinstance(node.arg, nodes.Const) else None
        return node.node, key if isinstance(key, str) else None
    return None, None


class BoundExceeded(SecurityError):
    """A template went over one of the sandbox's bounds."""


class _Budget:
    """The steps a render has left."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise BoundExceeded(
                f"the template does over {MAX_STEPS:,} steps (loop iterations and items handled)"
            )


_budget: ContextVar[_Budget | None] = ContextVar("render_budget", default=None)


@contextmanager
def budgeted() -> Iterator[None]:
    """Run a render, in this thread, with a fresh budget of `MAX_STEPS` steps."""
    token = _budget.set(_Budget(MAX_STEPS))
    try:
        yield
    finally:
        _budget.reset(token)


def _spend(steps: int) -> None:
    budget = _budget.get()
    if budget is None:  # compile time: the caller (constant folding) then leaves it to the render
        raise BoundExceeded("template code runs only in a render")
    budget.spend(steps)


def _size(value: object) -> int:
    """The items `value` holds, for what holds items; 0 for anything else."""
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | set | frozenset | range) else 0


def _check_size(value: object, what: str) -> None:
    if _size(value) > MAX_ITEMS:
        raise BoundExceeded(f"{what} makes over {MAX_ITEMS:,} items")


def _check_number(value: object, what: str) -> None:
    if isinstance(value, int) and abs(value).bit_length() > MAX_INT_BITS:
        raise BoundExceeded(f"{what} makes a number over {MAX_INT_BITS:,} bits")


def _check_widths(numbers: Iterable[object], what: str) -> None:
    for number in numbers:
        if isinstance(number, int) and abs(number) > MAX_ITEMS:
            raise BoundExceeded(f"{what} asks for a width over {MAX_ITEMS:,}")


def _check_format(text: str, arguments: Iterable[object], what: str) -> None:
    """Refuse a format string (either style) with a width or precision over `MAX_ITEMS`, or one
    taken from the arguments when an argument is that big."""
    specs = [part for match in PERCENT_SPEC.finditer(text) for part in match.groups() if part]
    specs += [match.group() for match in BRACE_FIELD.finditer(text)]
    _check_widths((int(digits) for spec in specs for digits in re.findall(r"\d+", spec)), what)
    if "*" in specs or any(spec.endswith("{") or ":{" in spec for spec in specs):
        _check_widths(arguments, what)


def _joinable(separator: object, items: Iterable[Any], what: str) -> list[Any]:
    """`items` as a list, refused when joining them with `separator` makes over `MAX_ITEMS` items
    (a separator repeats once per item: a short text and a long range multiply)."""
    listed = list(_counted(items))
    if _size(separator) * len(listed) > MAX_ITEMS:
        raise BoundExceeded(f"{what} makes over {MAX_ITEMS:,} items")
    return listed


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """`iterable`, a step spent on each item."""
    for item in iterable:
        _spend(1)
        yield item


def _charged(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter `function`, spending a step per item of the value it is given and refusing a
    result over `MAX_ITEMS` items."""
    # A filter that is passed the context, eval context or environment gets the value second.
    value_at = 1 if hasattr(function, "jinja_pass_arg") else 0
    what = f"the filter {name}"

    @functools.wraps(function)
    def charged(*args: Any, **kwargs: Any) -> Any:
        value = args[value_at] if len(args) > value_at else None
        _spend(_size(value))
        if name in WIDTH_FILTERS:
            _check_widths([*args[value_at + 1 :], *kwargs.values()], what)
        elif name == "format" and isinstance(value, str):
            _check_format(value, [*args[value_at + 1 :], *kwargs.values()], what)
        elif name == "join" and value is not None:
            separator = args[value_at + 1] if len(args) > value_at + 1 else kwargs.get("d", "")
            joined = _joinable(separator, value, what)
            args = (*args[:value_at], joined, *args[value_at + 1 :])
        result = function(*args, **kwargs)
        _check_size(result, what)
        return result

    return charged


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja2's code generator, with each `for` loop iterating `environment.counted(iterable)`."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        at = node.iter.lineno
        function = nodes.EnvironmentAttribute("counted", lineno=at)
        counted = nodes.Call(function, [node.iter], [], None, None, lineno=at)
        bounded = nodes.For(
            node.target, counted, node.body, node.else_, node.test, node.recursive, lineno=node.lineno
        )
        super().visit_For(bounded, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `~` is no operator `call_binop` sees: its result is checked, as it grows at most
        # as many times over as the template has `~`s.
        self.write("environment.joined(")
        super().visit_Concat(node, frame)
        self.write(")")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with operands, loops and the work of filters and methods bounded."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _charged(name, function) for name, function in self.filters.items()}
        # Placeholder text has no place in a prompt, and `lipsum(n)` makes any amount of it.
        del self.globals["lipsum"]

    counted = staticmethod(_counted)
    """What a `for` loop iterates: its iterable, a step spent on each item."""

    @staticmethod
    def joined(text: str) -> str:
        """What `~` made, refused when over `MAX_ITEMS` characters."""
        _check_size(text, "`~`")
        return text

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        """`left operator right`, refused before it is computed when it would be too big."""
        what = f"`{operator_}`"
        if operator_ == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            # |left ** right| has about bit_length(left) * right bits; 0, 1 and -1 stay small.
            if abs(left) > 1 and (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
                raise BoundExceeded(f"{what} makes a number over {MAX_INT_BITS:,} bits")
        elif operator_ == "*":
            _check_product(left, right, what)
        elif operator_ == "+" and _size(left) + _size(right) > MAX_ITEMS:
            raise BoundExceeded(f"{what} makes over {MAX_ITEMS:,} items")
        elif operator_ == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else [right], what)
        result = self.binop_table[operator_](left, right)
        _spend(_size(result))
        _check_number(result, what)
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Call `__obj` as the sandbox does, spending a step per item of its arguments (and of the
        string or list a method belongs to) and refusing a result over `MAX_ITEMS` items."""
        if __obj is _counted:  # a `for` loop's iterable: its items are the steps
            return _counted(*args)
        what = f"calling {getattr(__obj, '__name__', 'a function')}"
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's `loop(children)`
            _spend(RECURSION_STEPS)
            args = (_counted(args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        _spend(_size(owner) + sum(_size(value) for value in (*args, *kwargs.values())))
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str) and name in WIDTH_METHODS:
            _check_widths([*args, *kwargs.values()], what)
        elif isinstance(owner, str) and name == "join" and len(args) == 1:
            args = (_joinable(owner, args[0], what),)
        result = super().call(__context, __obj, *args, **kwargs)
        _check_size(result, what)
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map` as the sandbox runs them, refused with a width over
        `MAX_ITEMS`."""
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        text: str = value.__self__

        @functools.wraps(formatter)
        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(text, [*args, *kwargs.values()], "`format`")
            return formatter(*args, **kwargs)

        return checked


def _check_product(left: Any, right: Any, what: str) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise BoundExceeded(f"{what} makes a number over {MAX_INT_BITS:,} bits")
        return
    # A sequence repeated: its items times the count (bool is an int too).
    count = right if isinstance(right, int) else left if isinstance(left, int) else 1
    if max(_size(left), _size(right)) * max(count, 0) > MAX_ITEMS:
        raise BoundExceeded(f"{what} makes over {MAX_ITEMS:,} items")


def sandbox() -> BoundedSandbox:
    """The environment every template is parsed, compiled and rendered in."""
    return BoundedSandbox(
        undefined=jinja2.StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
