"""Rendering a compiled template into chat messages, in the sandbox and within the size and time limits.

Templates run in the bounded sandbox of `sandbox.py` (Jinja2's immutable one) with StrictUndefined
and see only plain data. The customer's words reach only the user part: the system part (and the
reply of a fallback or handoff) is rendered without `message.text` and `history`, and
`<customer_message>` tags in customer text are rewritten so the text cannot close its delimiter.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes

from app.errors import TemplateError
from app.prompts.diagnostics import missing_value_problem, value_paths
from app.prompts.file_format import SAMPLE_REASON, PromptTemplate
from app.prompts.sandbox import budgeted
from app.schemas import CustomerMessage, HistoryTurn, Order, PromptRef, rfc3339
from app.tokens import ChatMessage

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
    with budgeted():  # the operand and loop bounds hold between chunks too (app/prompts/sandbox.py)
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
