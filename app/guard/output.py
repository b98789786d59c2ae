"""The output guard: an LLM answer is checked before it is published; a blocked one becomes the fallback.

Checks, in this order; the first that fires decides, and its name is the verdict's `check`:
- `secret`: the answer holds text shaped like a secret, by the Redactor's `SECRET_SHAPES` (first, so
  that no later detail can quote a secret);
- `system_prompt`: the answer repeats `RUN_WORDS` (12) or more consecutive words of the system
  part of the prompt (`echo.py`);
- `foreign_id`: the answer names an id shaped like this conversation's id or customer id but
  neither of them, nor one the customer wrote or this reply's tools returned (`identifiers.py`);
- `foreign_email`: the answer holds an e-mail address that is not the customer's own, not in the
  system part (the company's addresses that a template gives the model), not returned by this
  reply's tools and not allowed by the guard's allow-list. Placeholders such as `[EMAIL_1]` are
  no addresses.

What this reply's tools returned may be repeated: the tools answer for the asking customer only
(the order lookup reads their orders alone; an `http` tool's service must check the same), so
the data they give is the customer's, even an id or an address they never wrote.

The check runs on the answer as the LLM gave it, before key-shaped text is redacted, or the secret
check would see only `[redacted]`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from app.guard.echo import RUN_WORDS, longest_echo
from app.guard.identifiers import foreign_id, shaped_ids
from app.observability.logs import SECRET_SHAPES
from app.schemas import CustomerMessage, HistoryTurn
from app.signals.pii import EMAIL
from app.tokens import ChatMessage

GuardCheck = Literal["system_prompt", "secret", "foreign_id", "foreign_email"]
SYSTEM_ROLES = ("system", "developer")


def emails_in(texts: Iterable[str]) -> frozenset[str]:
    """The e-mail addresses in `texts`, lower-cased."""
    return frozenset(match.group().lower() for text in texts for match in EMAIL.finditer(text))


@dataclass(frozen=True)
class GuardContext:
    """What the guard knows of the conversation an answer is for."""

    system_text: str  # the system part(s) of the rendered prompt
    conversation_id: str
    customer_id: str | None
    customer_texts: tuple[str, ...] = ()
    """What the customer gave or was told: the message, its metadata, the profile, the history."""
    tool_results: Sequence[str] = ()
    """What this reply's tools returned, unmasked. The pipeline passes the list the tools add to
    while the answer is made, so it is read anew at each check, never cached."""

    # Read only when an answer holds an address or an id shaped like the conversation's own:
    # most answers hold neither, and their conversations' histories need not be searched.
    @functools.cached_property
    def own_emails(self) -> frozenset[str]:
        """The customer's own addresses, lower-cased."""
        return emails_in(self.customer_texts)

    @functools.cached_property
    def mentioned_ids(self) -> frozenset[str]:
        """The ids the customer wrote (or was told), case-folded."""
        return shaped_ids(self.customer_texts, (self.conversation_id, self.customer_id))

    def known_ids(self) -> frozenset[str]:
        """The ids the customer wrote or was told, and those this reply's tools returned, case-folded."""
        returned = shaped_ids(self.tool_results, (self.conversation_id, self.customer_id))
        return self.mentioned_ids | returned

    @classmethod
    def for_message(
        cls,
        prompt: Sequence[ChatMessage],
        message: CustomerMessage,
        customer: Mapping[str, str],
        history: Sequence[HistoryTurn],
        tool_results: Sequence[str] = (),
    ) -> GuardContext:
        """The context of `message`, answered with the chat `prompt` and the tools whose results
        `tool_results` holds (as they come).

        The customer's own addresses and the ids they wrote are those in the message, its metadata,
        the profile and the history (their turns, and our answers: what they were told already).
        """
        texts = (
            message.text,
            json.dumps(message.metadata, default=str) if message.metadata else "",
            *customer.values(),
            *(turn.text for turn in history),
        )
        return cls(
            system_text="\n".join(m["content"] for m in prompt if m["role"] in SYSTEM_ROLES),
            conversation_id=message.conversation_id,
            customer_id=message.customer_id,
            customer_texts=texts,
            tool_results=tool_results,
        )


@dataclass(frozen=True)
class GuardVerdict:
    """The guard's decision: `check` is the check that fired, None when the answer may be published.

    `detail` starts with the check's name and says what kind of text was found, never the text:
    no secret's value, no other customer's id or address, no words of the prompt. It is the
    `guard_blocked` dead letter's detail as it is, and dead letters are read by many.
    """

    check: GuardCheck | None = None
    detail: str = ""

    @property
    def blocked(self) -> bool:
        """Whether the answer must be replaced by the fallback."""
        return self.check is not None


PASSED = GuardVerdict()


class OutputGuard:
    """Checks each answer for a system-prompt leak, secrets, and other customers' ids and addresses.

    Cost (`python -m bench.guard`, 1,000 mock-LLM and hand-written answers, a shared 2-CPU VM): a
    median 45 to 60 µs per answer, 110 to 130 µs for a conversation's first (its system text's
    shingles are built then); an LLM answer takes hundreds of milliseconds.
    """

    def __init__(self, allowed_emails: Iterable[str] = ()) -> None:
        """`allowed_emails`: addresses (`help@shop.example`) or whole domains (`@shop.example`) the
        answers may always give."""
        allowed = {entry.strip().lower() for entry in allowed_emails if entry.strip()}
        self._allowed_domains = frozenset(entry[1:] for entry in allowed if entry.startswith("@"))
        self._allowed_emails = frozenset(entry for entry in allowed if not entry.startswith("@"))

    def check(self, answer: str, context: GuardContext, *, echo: bool = True) -> GuardVerdict:
        """The verdict on `answer`; the first check that fires, in the module's order, decides.

        Without `echo`, the system-prompt check is left out: the stream's window follows repeats
        word by word itself (`EchoFollower`), and checks its pieces for the rest.
        """
        for shape, pattern in SECRET_SHAPES.items():
            if pattern.search(answer):
                return GuardVerdict("secret", f"secret: the answer holds text shaped like {shape}")
        if echo and (repeat := longest_echo(answer, context.system_text)):
            return GuardVerdict(
                "system_prompt",
                f"system_prompt: the answer repeats {len(repeat)} consecutive words of the system prompt "
                f"(limit {RUN_WORDS - 1})",
            )
        own_ids = {"conversation id": context.conversation_id, "customer id": context.customer_id}
        # The ids the customer knows are searched for only when the answer names an id not its own.
        foreign = foreign_id(answer, own_ids, frozenset())
        if foreign and (foreign := foreign_id(answer, own_ids, context.known_ids())):
            return GuardVerdict("foreign_id", f"foreign_id: the answer names another {foreign[0]}")
        if self._names_foreign_email(answer, context):
            return GuardVerdict(
                "foreign_email",
                "foreign_email: the answer gives an e-mail address that is not the customer's",
            )
        return PASSED

    def _names_foreign_email(self, answer: str, context: GuardContext) -> bool:
        """Whether `answer` holds an address nobody allowed (the address is someone's data)."""
        given: frozenset[str] | None = None  # read only when an unknown address turns up
        for match in EMAIL.finditer(answer):
            address = match.group().lower()
            domain = address.rpartition("@")[2]
            if (
                address in context.own_emails
                or address in self._allowed_emails
                or domain in self._allowed_domains
            ):
                continue
            if given is None:  # by the template, or by this reply's tools
                given = emails_in([context.system_text, *context.tool_results])
            if address not in given:
                return True
        return False
