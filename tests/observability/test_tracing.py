"""W3C Trace Context: what an input's headers carry, and what each produced record gets."""

from __future__ import annotations

import re

import pytest

from app.observability.tracing import TraceContext

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT}-01".encode()
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parts(headers: list[tuple[str, bytes]]) -> tuple[str, str, str]:
    found = dict(headers)
    parsed = TRACEPARENT.match(found["traceparent"].decode())
    assert parsed is not None, found
    trace_id, span_id, flags = parsed.groups()
    return trace_id, span_id, flags


def test_the_input_trace_goes_on_with_a_span_of_each_record() -> None:
    trace = TraceContext.of([("traceparent", VALID), ("tracestate", b"vendor=opaque")])
    assert (trace.trace_id, trace.parent_id, trace.flags) == (TRACE_ID, PARENT, "01")
    first, second = trace.headers(), trace.headers()
    assert parts(first)[0] == parts(second)[0] == TRACE_ID
    assert len({parts(first)[1], parts(second)[1], PARENT}) == 3
    assert ("tracestate", b"vendor=opaque") in first


def test_header_names_are_case_insensitive_and_mappings_work() -> None:
    assert TraceContext.of({"TraceParent": VALID}).trace_id == TRACE_ID
    assert TraceContext.of((("other", b"1"), ("traceparent", VALID))).trace_id == TRACE_ID


def test_flags_travel_unchanged() -> None:
    trace = TraceContext.of([("traceparent", f"00-{TRACE_ID}-{PARENT}-00".encode())])
    assert parts(trace.headers())[2] == "00"


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"garbage",
        f"ff-{TRACE_ID}-{PARENT}-01".encode(),  # version ff is invalid
        f"00-{'0' * 32}-{PARENT}-01".encode(),  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01".encode(),  # all-zero parent id
        f"00-{TRACE_ID}-{PARENT}-01-extra".encode(),  # version 00 has exactly four fields
        b"\xff\xfe",
    ],
)
def test_an_input_without_a_valid_traceparent_starts_a_trace(value: bytes | None) -> None:
    trace = TraceContext.of([] if value is None else [("traceparent", value)])
    trace_id, _, flags = parts(trace.headers())
    assert trace.parent_id is None
    assert trace_id == trace.trace_id != TRACE_ID
    assert set(trace_id) != {"0"}
    assert flags == "01"


def test_a_later_version_with_more_fields_is_read() -> None:
    trace = TraceContext.of([("traceparent", f"01-{TRACE_ID}-{PARENT}-01-future".encode())])
    assert trace.trace_id == TRACE_ID


def test_an_oversized_tracestate_is_dropped_not_the_trace() -> None:
    trace = TraceContext.of([("traceparent", VALID), ("tracestate", b"k=" + b"v" * 600)])
    assert trace.trace_id == TRACE_ID
    assert [name for name, _ in trace.headers()] == ["traceparent"]
