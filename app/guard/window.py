"""The streamed answer held back until the output guard has read it (promise 8): nothing the guard
would block reaches the stream topic.

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

import re
from collections import deque

from app.guard.echo import RUN_WORDS, WORD, EchoFollower, words
from app.guard.output import GuardContext, OutputGuard
from app.llm.client import DeltaSink

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
