"""The project's errors: the error tree, a pydantic ValidationError as one line, and how an
`enricher` command ends on a problem (one line on stderr and an exit code). Third-party
exceptions are translated into the tree where they occur.

EnricherError
 ├── BadInput                 the message itself is wrong: DLQ, never retried
 │    ├── InvalidJson         kind "invalid_json" (not UTF-8, not JSON, no value at all)
 │    ├── InvalidMessage      kind "invalid_message" (not an object; fields missing, empty, wrong type)
 │    └── TooLarge            kind "too_large" (text over ENRICHER_MAX_INPUT_CHARS)
 ├── LLMError
 │    ├── LLMTransient        retriable: timeout, connection, 408/409/429/5xx, broken stream;
 │    │                       a 429 is `rate_limited` (slow down, no outage) or `quota_exhausted`
 │    ├── LLMRejected         not retriable for this input: 400, 404, 413, 422 → kind "llm_rejected"
 │    ├── LLMAuthError        401, 403: not the message's fault; retried, worker not ready
 │    ├── LLMUnavailable      deadline passed with no answer → fallback reply, kind "llm_unavailable"
 │    └── InvalidStructured   the answer is not the JSON the template's response schema asks for
 │                            (after one repair) → fallback reply, kind "invalid_structured"
 ├── ContextUnavailable      Redis failed; callers go on with less context
 ├── ToolFailed              a tool the LLM called could not answer: told to the LLM as the call's result
 └── TemplateError           a prompt template failed to load or render (file:line in the message)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Literal, NoReturn, TypeVar

from pydantic import ValidationError

from app.settings import SettingsError, load_settings

ErrorKind = Literal[
    "invalid_json",
    "invalid_message",
    "too_large",
    "llm_rejected",
    "llm_unavailable",
    "guard_blocked",
    "invalid_structured",
    "internal",
]

Loaded = TypeVar("Loaded")

EXIT_FAILURE = 1  # the command could not do its job
EXIT_CONFIG = 2  # a setting, an argument or a template is wrong: nothing was tried


class EnricherError(Exception):
    """Base of every error this project raises on purpose.

    `kind` is the dead letter's kind when the error decides a message's fate; `retriable`
    says whether the LLM call that raised it is tried again.
    """

    kind: ErrorKind = "internal"
    retriable: bool = False


class BadInput(EnricherError):
    """The input message cannot be answered as it is; it goes to the DLQ."""

    kind: ErrorKind = "invalid_message"


class InvalidJson(BadInput):
    """The value is not UTF-8 JSON, or there is no value (a tombstone)."""

    kind: ErrorKind = "invalid_json"


class InvalidMessage(BadInput):
    """The JSON object lacks a required field or has a field of the wrong type."""

    kind: ErrorKind = "invalid_message"


class TooLarge(BadInput):
    """The customer's text is longer than the configured limit."""

    kind: ErrorKind = "too_large"


class LLMError(EnricherError):
    """The LLM call did not produce an answer."""


class LLMTransient(LLMError):
    """A failure that may pass: retried with backoff, honouring `retry_after_s`.

    `rate_limited`: the provider said "slower" (429), which is no outage. `quota_exhausted`:
    the model's quota is used up (429 `insufficient_quota`); only another model can answer.
    """

    retriable = True

    def __init__(
        self,
        message: str,
        retry_after_s: float | None = None,
        *,
        rate_limited: bool = False,
        quota_exhausted: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.rate_limited = rate_limited or quota_exhausted
        self.quota_exhausted = quota_exhausted


class LLMRejected(LLMError):
    """The provider refused this particular input (HTTP 400-class); retrying cannot help."""

    kind: ErrorKind = "llm_rejected"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMAuthError(LLMError):
    """The provider refused our credentials; no message can be answered until that is fixed."""

    retriable = True


class LLMUnavailable(LLMError):
    """No answer within the per-message deadline."""

    kind: ErrorKind = "llm_unavailable"


class InvalidStructured(LLMError):
    """The LLM's answer is not the JSON object its template's response schema asks for.

    The message names only where and which rule failed, for the dead letter; `explanation` says
    what is wrong in the LLM's own terms, quoting its answer, for the one repair request.
    """

    kind: ErrorKind = "invalid_structured"

    def __init__(self, message: str, explanation: str) -> None:
        super().__init__(message)
        self.explanation = explanation


class ContextUnavailable(EnricherError):
    """Redis could not be reached or answered wrongly; the reply is made with less context."""


class ToolFailed(EnricherError):
    """A tool the LLM called could not answer (app/tools); the LLM reads why, and the reply goes on."""


class TemplateError(EnricherError):
    """A prompt template is broken; `location` is `file:line` when known."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.reason = message


def where(location: Sequence[str | int]) -> str:
    """`('usage', 'prompt_tokens')` as `usage.prompt_tokens`."""
    return ".".join(str(part) for part in location)


def one_line(error: ValidationError, *, prefix: Sequence[str | int] = (), first_only: bool = False) -> str:
    """`field: problem; other.field: problem` (just the first with `first_only`), under `prefix`."""
    problems = error.errors()[:1] if first_only else error.errors()
    return "; ".join(
        f"{where((*prefix, *item['loc'])) or 'value'}: {str(item['msg']).removeprefix('Value error, ')}"
        for item in problems
    )


def fail(line: str, code: int = EXIT_FAILURE, *, command: str = "enricher") -> NoReturn:
    """Print `command: line` to stderr and exit with `code`."""
    print(f"{command}: {line}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def settings_or_exit(load: Callable[[], Loaded] = load_settings) -> Loaded:  # type: ignore[assignment]
    """What `load` reads from the environment (the settings), or exit 2 with the one line
    naming the bad variable that its SettingsError gives."""
    try:
        return load()
    except SettingsError as error:
        fail(f"configuration error: {error}", EXIT_CONFIG)
