"""The sandbox every template is compiled and rendered in: Jinja2's immutable sandbox, with every
operand and every loop bounded.

Jinja2's sandbox decides what a template may reach, not how much work it does: `9**(9**8)` or
`'a' * 2**34` is computed whole, at compile time even (Jinja2 folds constant expressions), and
a loop that prints nothing runs as long as it likes, since the size and time limits of
`rendering.py` look only between output chunks. Here:

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
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

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
