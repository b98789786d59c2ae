"""The output guard: an LLM answer is checked before it is published; a blocked one becomes the fallback.

Checks, in this order; the first that fires decides, and its name is the verdict's `check`:
- `secret`: the answer holds text shaped like a secret, by the Redactor's `SECRET_SHAPES` (first, so
  that no later detail can quote a secret);
- `system_prompt`: the answer repeats `RUN_WORDS` (12) or more consecutive words of the system
  part of the prompt (`longest_echo`);
- `foreign_id`: the answer names an id shaped like this conversation's id or customer id but
  neither of them, nor one the customer wrote or this reply's tools returned (`foreign_id`);
- `foreign_email`: the answer holds an e-mail address that is not the customer's own, not in the
  system part (the company's addresses that a template gives the model), not returned by this
  reply's tools and not allowed by the guard's allow-list. Placeholders such as `[EMAIL_1]` are
  no addresses.

What this reply's tools returned may be repeated: the tools answer for the asking customer only
(the order lookup reads their orders alone; an `http` tool's service must check the same), so
the data they give is the customer's, even an id or an address they never wrote.

The check runs on the answer as the LLM gave it, before key-shaped text is redacted, or the secret
check would see only `[redacted]`.

**The echo of the system prompt**: runs of words in common, found by shingles. Words are runs of
letters and digits, case-folded, so case, whitespace and punctuation never hide a repeat. The
system text's every `RUN_WORDS`-word window (shingle) goes into a set; the answer's windows are
looked up in it, which is linear in the answer's length. A passage of the system text in double
quotes is a line the model is given to say, not an instruction: it is left out. `EchoFollower`
reads a streamed answer a word at a time, for the guard's window (`GuardWindow`): it finds the
same repeats, and says how many of the last words could still begin one.

**Foreign ids**: ids in an answer shaped like this conversation's own ids, but someone else's.
The shape of an id is read from the conversation's own id:
- a **UUID** (`8-4-4-4-12` hex digits) stands for any UUID;
- **a prefix of 2 to 16 letters, a separator (`-`, `_` or `:`) and a tail of letters and digits
  that holds a digit** (`conv-123`, `cust-7`, `cust_a9f3`, `conv-2024-0001`) stands for the same
  prefix (in any case) and separator followed by any such tail. The tail's own letters-or-digits
  make-up is not kept: one system's ids differ in their tails (`cust-7`, `cust-a9f3`), and the digit
  keeps words (`conv-ersation`, `cust-service`) out;
- anything else has **no shape** and finds nothing: a bare number or word would match order
  numbers and prose, and a one-letter prefix (`c-1`) would match order numbers such as `A-1042`.

Ids are compared case-insensitively. The conversation's own ids are never foreign, and neither are ids
the customer wrote (another ticket of theirs): repeating those tells the customer nothing new.

**The window** (`GuardWindow`): the streamed answer held back until the output guard has read it
(promise 8): nothing the guard would block reaches the stream topic.

The guard's checks read text of two kinds. A secret, an id or an address never holds whitespace:
once the text up to a whitespace has arrived, every one of them before it is whole, and the
guard's checks on that piece say what they would say on the whole answer. A repeat of the system
prompt is `RUN_WORDS` words in a row: `EchoFollower` finds it at its last word, and says how
many of the last words could still begin one. Text is sent on once it is both before the last
whitespace checked and before those words. The first chunk goes out as soon as a word has
passed; after it the checks run when `PIECE_CHARS` characters wait for them. So an answer that
shares little with its system text is held back by a word at first, and by a few later, and
one that repeats it by up to `RUN_WORDS` - 1 words while each two in a row are in it too.

When a check fires, nothing more is sent; the pipeline's check of the whole answer then makes it
the fallback, whose `reset` voids what went out before (text that passed). When the whole answer
passes, `release` sends what is still held. Key-shaped text is never sent: the guard's `secret`
check is the patterns that redact it in replies, so text that passed it has none.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from app.llm.client import DeltaSink
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


# The echo of the system prompt, found by shingles.

WORD = re.compile(r"\w+")
QUOTED = re.compile(r'"[^"\n]*"|“[^”\n]*”')
# 12: natural answers share at most 5 words in a row with the shipped templates' system parts
# (tests/guard/test_echo.py), whose instructions are mostly sentences of 10 to 17 words, so a leak
# of one instruction is caught, and eleven words in common (a greeting, a stock phrase) are not.
RUN_WORDS = 12


def words(text: str) -> list[str]:
    """The words of `text`, case-folded."""
    return WORD.findall(text.casefold())


def longest_echo(answer: str, system_text: str) -> list[str]:
    """The answer's longest stretch whose every `RUN_WORDS`-word window is in `system_text`; [] if none.

    A stretch found is at least `RUN_WORDS` words long.
    """
    shingles = system_words(system_text).shingles
    said = words(answer)
    best_start, best_end = 0, 0
    start = None  # where the current run of windows found in the system text began
    for position in range(len(said) - RUN_WORDS + 1):
        if tuple(said[position : position + RUN_WORDS]) in shingles:
            start = position if start is None else start
            if position + RUN_WORDS - start > best_end - best_start:
                best_start, best_end = start, position + RUN_WORDS
        else:
            start = None
    return said[best_start:best_end]


@dataclass(frozen=True)
class SystemWords:
    """The system text's words as the echo checks read them, passage by passage (quotes left out)."""

    shingles: frozenset[tuple[str, ...]]
    """Every `RUN_WORDS`-word window."""
    pairs: frozenset[tuple[str, str]]
    """Every two words in a row, of passages long enough to hold a window."""
    vocabulary: frozenset[str]
    """Every word of those passages."""


@functools.lru_cache(maxsize=256)
def system_words(system_text: str) -> SystemWords:
    """The shingles, pairs and words of `system_text`."""
    # Cached: a conversation's system text is the same for each of its replies, and building the
    # sets costs more than the look-ups (bench/guard.py).
    shingles: set[tuple[str, ...]] = set()
    pairs: set[tuple[str, str]] = set()
    vocabulary: set[str] = set()
    for part in QUOTED.split(system_text):
        told = words(part)
        if len(told) < RUN_WORDS:
            continue
        shingles.update(tuple(told[i : i + RUN_WORDS]) for i in range(len(told) - RUN_WORDS + 1))
        pairs.update(itertools.pairwise(told))
        vocabulary.update(told)
    return SystemWords(frozenset(shingles), frozenset(pairs), frozenset(vocabulary))


class EchoFollower:
    """Reads an answer word by word: whether it has repeated `RUN_WORDS` words of the system text
    in a row, and how many of its last words could still be the start of such a repeat.

    The words of a repeat follow each other in the system text, so each two of them in a row are
    one of its pairs: the run of last words that are all pairs there bounds what may still grow
    into a repeat, at the cost of one set look-up a word. Only a run of `RUN_WORDS` is looked up
    in the shingles.
    """

    def __init__(self, system_text: str) -> None:
        self._told = system_words(system_text)
        self._last: deque[str] = deque(maxlen=RUN_WORDS)
        self._run = 0

    @property
    def open_words(self) -> int:
        """How many of the last words could still be part of a repeat (at most `RUN_WORDS` - 1)."""
        return min(self._run, RUN_WORDS - 1)

    def add(self, word: str) -> bool:
        """Follow one more (case-folded) word; True when the last `RUN_WORDS` words repeat the system text."""
        if self._last and (self._last[-1], word) in self._told.pairs:
            self._run += 1
        else:
            self._run = 1 if word in self._told.vocabulary else 0
        self._last.append(word)
        return self._run >= RUN_WORDS and tuple(self._last) in self._told.shingles


# Foreign ids: ids shaped like this conversation's own, but someone else's.

UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# A tail: letters and digits, maybe in groups joined by separators, with a digit somewhere.
TAIL = r"(?=[A-Za-z0-9_:-]*?[0-9])[A-Za-z0-9]+(?:[-_:][A-Za-z0-9]+)*"
PREFIXED = re.compile(rf"([A-Za-z]{{2,16}})([-_:]){TAIL}")


@functools.lru_cache(maxsize=1024)
def id_shape(own_id: str) -> re.Pattern[str] | None:
    """The pattern of ids shaped like `own_id` (see the module's rules), or None when it has no shape."""
    if re.fullmatch(UUID, own_id):
        return re.compile(rf"(?<![\w-]){UUID}(?![\w-])")
    prefixed = PREFIXED.fullmatch(own_id)
    if prefixed is None:
        return None
    prefix, separator = prefixed.groups()
    return re.compile(rf"(?<![\w-]){re.escape(prefix)}{re.escape(separator)}{TAIL}(?!\w)", re.IGNORECASE)


def shaped_ids(texts: Iterable[str], own_ids: Iterable[str | None]) -> frozenset[str]:
    """The ids in `texts` shaped like any of `own_ids`, case-folded."""
    shapes = [shape for own in own_ids if own and (shape := id_shape(own))]
    return frozenset(
        match.group().casefold() for text in texts for shape in shapes for match in shape.finditer(text)
    )


def foreign_id(
    answer: str, own_ids: Mapping[str, str | None], mentioned: frozenset[str]
) -> tuple[str, str] | None:
    """The first id in `answer` shaped like one of `own_ids` but none of them, with that id's label.

    `own_ids` maps a label ("conversation id", "customer id") to the conversation's own id;
    `mentioned` holds (case-folded) the ids the customer wrote, which are not foreign either.
    """
    allowed: frozenset[str] | None = None  # made only when an id of the shape turns up
    for label, own in own_ids.items():
        shape = id_shape(own) if own else None
        if shape is None:
            continue
        for match in shape.finditer(answer):
            if allowed is None:
                allowed = mentioned | {own.casefold() for own in own_ids.values() if own}
            if match.group().casefold() not in allowed:
                return label, match.group()
    return None


# The window: the streamed answer held back until the guard has read it.

# Greedy, then back to the last whitespace: its end is where the text's last word starts.
THROUGH_LAST_SPACE = re.compile(r".*\s", re.DOTALL)
# Once a chunk has gone out, the checks run when this much text waits for them, not at every
# token (4 characters or so): a check is a dozen regular expressions, and chunks are merged for
# 50 ms anyway (bench/guard.py, one session: a median 230 µs an answer of 36 tokens checked at
# each, 80 to 110 µs this way; 64 µs once the pieces skipped the echo check, which the word
# follower does).
PIECE_CHARS = 32


class GuardWindow:
    """A DeltaSink that sends on to `sink` only what the guard has passed and no later text can
    make part of something it blocks.

    Positions are counted from the answer's start; `_text` holds the answer from `_base` on: what
    is not sent yet, and the last word checked before it (the look-behind of "bearer <token>").
    """

    def __init__(self, sink: DeltaSink, guard: OutputGuard, context: GuardContext) -> None:
        self._sink, self._guard, self._context = sink, guard, context
        self._start_over()

    def _start_over(self) -> None:
        self._text = ""
        self._base = 0
        self._sent = 0  # the text before this has been sent
        self._followed = 0  # the echo follower has read the words before this
        self._checked = 0  # the checks passed the text before this, which follows a whitespace
        self._piece = 0  # the next piece to check starts here: the last word of the last piece
        self._starts: deque[int] = deque(maxlen=RUN_WORDS - 1)  # where the last words began
        self._echo = EchoFollower(self._context.system_text)
        self._blocked = False

    async def send(self, delta: str) -> None:
        """Hold `delta` back, and send on what the guard's checks have now passed for good."""
        arrived = len(self._text)
        self._text += delta
        if self._blocked or delta.isalnum():
            return  # only the last word grew
        through = THROUGH_LAST_SPACE.match(self._text, arrived)
        if through is None:
            return  # no whitespace came: the checks could not read further
        checkable = self._base + through.end()
        if self._sent and checkable - self._checked < PIECE_CHARS:
            return
        self._blocked = self._follow_words() or self._check_piece(checkable)
        if self._blocked:
            return
        open_words = self._echo.open_words
        until = min(self._starts[-open_words] if open_words else self._followed, self._checked)
        if until > self._sent:
            ready = self._text[self._sent - self._base : until - self._base]
            self._sent = until
            kept = min(until, self._piece)
            self._text, self._base = self._text[kept - self._base :], kept
            await self._sink.send(ready)

    def restart(self) -> None:
        """The attempt failed: forget what was held back and start over."""
        self._start_over()
        self._sink.restart()

    async def release(self) -> None:
        """The whole answer passed the guard: send what is still held back."""
        ready = self._text[self._sent - self._base :]
        self._sent = self._base + len(self._text)
        if ready:
            await self._sink.send(ready)

    def _follow_words(self) -> bool:
        """Give the echo follower the words completed since; True when they repeat the system text."""
        for match in WORD.finditer(self._text, self._followed - self._base):
            if match.end() == len(self._text):
                break  # the next delta may go on with this word
            said = match.group()
            # Case-folding can split a word only outside ASCII (İ is i and a dot above).
            for word in (said.lower(),) if said.isascii() else words(said):
                self._starts.append(self._base + match.start())
                if self._echo.add(word):
                    return True
            self._followed = self._base + match.end()
        return False

    def _check_piece(self, checkable: int) -> bool:
        """Check the text up to `checkable`, which follows a whitespace; True when a check fires."""
        piece = self._text[self._piece - self._base : checkable - self._base]
        if self._guard.check(piece, self._context, echo=False).blocked:
            return True
        self._checked = checkable
        last_word = THROUGH_LAST_SPACE.match(piece.rstrip())
        self._piece += last_word.end() if last_word else 0
        return False
