"""What the prompt tests share: customers and messages, template parts, writing a template into a copy of
the shipped set and reading back why it does not load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.errors import TemplateError
from app.prompts.library import PromptLibrary
from app.schemas import CustomerMessage

NOW = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
ADA = {"name": "Ada", "tier": "gold", "plan": "pro"}
BOB = {"name": "Bob", "tier": "silver"}
REPLY_HEADER = "---\nname: {name}\ndescription: A test template.\n{extra}---\n"
GOOD_SYSTEM = "{% block system %}\nYou help customers.\n{% endblock %}\n"
GOOD_USER = "{% block user %}\n<customer_message>\n{{ message.text }}\n</customer_message>\n{% endblock %}\n"


def message(text: str = "Hello", **fields: str) -> CustomerMessage:
    return CustomerMessage.model_validate(
        {"message_id": "m-2", "conversation_id": "c-1", "text": text, **fields}
    )


def write(directory: Path, filename: str, body: str, name: str = "support_reply", extra: str = "") -> Path:
    path = directory / filename
    path.write_text(REPLY_HEADER.format(name=name, extra=extra) + body, encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").split("\n")
    return next(number for number, line in enumerate(lines, 1) if needle in line)


def load_error(directory: Path) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        PromptLibrary.load(directory)
    return caught.value


# Template code that, without the sandbox's bounds, runs for minutes or takes all memory (the
# first is folded at compile time): each alone on a line of its own.
UNBOUNDED = {
    "huge power": "{{ (9**(9**8)) % 7 }}",
    "huge repetition": "{{ 'a'*2**34 }}",
    "silent loop of 10^10 iterations": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
}
UNBOUNDED_REASONS = {
    "huge power": "`**` makes a number over 4,096 bits",
    "huge repetition": "`*` makes over 100,000 items",
    "silent loop of 10^10 iterations": "the template does over 1,000,000 steps",
}
