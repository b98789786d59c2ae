"""W3C Trace Context across topics: every record produced for a message continues its trace.

An input's `traceparent` names its trace and the span that produced it; each record the worker
produces for that message carries the same trace id with a span id of its own, and the
input's `tracestate` unchanged. An input without a valid `traceparent` starts a new trace.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
VERSION = "00"
SAMPLED = "01"
# version-trace_id-parent_id-flags; a later version may append fields after a dash.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_INVALID_VERSION = "ff"
MAX_TRACESTATE_BYTES = 512  # the spec's limit a carrier must propagate

Headers = Mapping[str, bytes | None] | Iterable[tuple[str, bytes | None]]


@dataclass(frozen=True)
class TraceContext:
    """The trace a message belongs to, and the flags and vendor state that travel with it."""

    trace_id: str
    parent_id: str | None = None
    flags: str = SAMPLED
    tracestate: str | None = None

    @classmethod
    def of(cls, headers: Headers | None) -> TraceContext:
        """The trace the record's headers carry, or a new one when they carry none that is valid."""
        found = _header_values(headers)
        parsed = _TRACEPARENT.match(found.get(TRACEPARENT, "").strip().lower())
        if parsed is None:
            return cls.new()
        version, trace_id, parent_id, flags, rest = parsed.groups()
        if (
            version == _INVALID_VERSION
            or (version == VERSION and rest)
            or set(trace_id) == {"0"}
            or set(parent_id) == {"0"}
        ):
            return cls.new()
        state = found.get(TRACESTATE)
        if state is not None and len(state.encode()) > MAX_TRACESTATE_BYTES:
            state = None
        return cls(trace_id, parent_id, flags, state or None)

    @classmethod
    def new(cls) -> TraceContext:
        """A trace that starts here."""
        return cls(f"{_nonzero_bits(128):032x}")

    def headers(self) -> list[tuple[str, bytes]]:
        """Headers for one record produced in this trace: its own span id, the same trace id."""
        span_id = f"{_nonzero_bits(64):016x}"
        headers = [(TRACEPARENT, f"{VERSION}-{self.trace_id}-{span_id}-{self.flags}".encode())]
        if self.tracestate:
            headers.append((TRACESTATE, self.tracestate.encode()))
        return headers


def _nonzero_bits(bits: int) -> int:
    """A random id of `bits` bits other than 0 (which the spec forbids). Ids need to be unique, not
    secret, so they come from `random` as OpenTelemetry's SDK takes them: no system call for
    each of a reply's records, as `secrets` makes."""
    return random.getrandbits(bits) or 1


def _header_values(headers: Headers | None) -> dict[str, str]:
    """The trace headers among `headers`, by lower-case name; undecodable values are left out."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    found: dict[str, str] = {}
    for key, value in pairs:
        name = key.lower() if isinstance(key, str) else ""
        if name in (TRACEPARENT, TRACESTATE) and isinstance(value, bytes) and name not in found:
            try:
                found[name] = value.decode("ascii")
            except UnicodeDecodeError:
                continue
    return found
