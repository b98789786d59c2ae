"""Keeping secrets out of logs, dead letters and replies: known values and key-shaped text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
# Named so that a report (the output guard's dead letter) can say what it found without the value.
SECRET_SHAPES: Mapping[str, re.Pattern[str]] = {
    "an API key (sk-...)": re.compile(r"sk-[A-Za-z0-9_\-]{8,}"),
    "a password in a URL": re.compile(r"(?<=://)[^/@\s:]*:[^/@\s]+(?=@)"),
    "a bearer token": re.compile(r"(?i)(?<=bearer )[A-Za-z0-9_\-.]{8,}"),
}
SECRET_PATTERNS = tuple(SECRET_SHAPES.values())


class Redactor:
    """Replaces known secret values and secret-looking patterns in text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text
