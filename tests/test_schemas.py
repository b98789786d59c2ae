"""Message validation: each bad-input kind, and the stable reply id."""

from __future__ import annotations

import json

import pytest

from app.errors import BadInput, InvalidJson, InvalidMessage, TooLarge
from app.schemas import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_VALUE_BYTES,
    DeadLetter,
    SourcePosition,
    parse_message,
    reply_id_for,
)

VALID = {"message_id": "m-1", "conversation_id": "c-1", "text": "Where is my order?"}


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def test_valid_message_with_defaults_and_unknown_fields() -> None:
    message = parse_message(encode({**VALID, "unknown": 1, "customer_id": "cust-7"}), 8000)
    assert (message.message_id, message.conversation_id, message.customer_id) == ("m-1", "c-1", "cust-7")
    assert (message.channel, message.locale, message.metadata) == ("chat", "en", {})


def test_sent_at_must_be_rfc3339() -> None:
    message = parse_message(encode({**VALID, "sent_at": "2026-11-25T04:00:01.234Z"}), 8000)
    assert message.sent_at is not None
    assert message.sent_at.year == 2026
    with pytest.raises(InvalidMessage, match="sent_at"):
        parse_message(encode({**VALID, "sent_at": "yesterday"}), 8000)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"{not json", InvalidJson),
        (b"\xff\xfe\x00", InvalidJson),
        (b"[1, 2]", InvalidMessage),
        (b"", InvalidJson),
        (None, InvalidJson),
        (encode({"conversation_id": "c", "text": "t"}), InvalidMessage),
        (encode({**VALID, "message_id": ""}), InvalidMessage),
        (encode({**VALID, "text": ""}), InvalidMessage),
        (encode({**VALID, "conversation_id": 42}), InvalidMessage),
        (encode({**VALID, "message_id": "x" * 129}), InvalidMessage),
        (encode({**VALID, "metadata": "not an object"}), InvalidMessage),
        (encode({**VALID, "text": "x" * 101}), TooLarge),
    ],
)
def test_bad_input_kinds(raw: bytes | None, kind: type[BadInput]) -> None:
    with pytest.raises(kind) as caught:
        parse_message(raw, 100)
    assert str(caught.value)


def test_error_detail_names_the_field() -> None:
    with pytest.raises(InvalidMessage, match="text"):
        parse_message(encode({"message_id": "m", "conversation_id": "c"}), 8000)


def test_reply_id_is_stable_per_message() -> None:
    assert reply_id_for("m-1") == reply_id_for("m-1")
    assert reply_id_for("m-1") != reply_id_for("m-2")


def test_dead_letter_keeps_raw_bytes() -> None:
    import base64

    letter = DeadLetter.build(
        "invalid_json", "nope", SourcePosition(topic="t", partition=1, offset=7), b"\xff"
    )
    document = json.loads(letter.model_dump_json())
    assert base64.b64decode(document["raw_b64"]) == b"\xff"
    assert document["error"] == {"kind": "invalid_json", "detail": "nope"}
    assert document["source"] == {"topic": "t", "partition": 1, "offset": 7}
    assert document["failed_at"].endswith("Z")


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([(f"h{n}", b"v") for n in range(MAX_HEADERS + 1)], f"record has {MAX_HEADERS + 1} headers"),
        ([("big", b"y" * MAX_HEADER_BYTES)], f"headers have {MAX_HEADER_BYTES + 3} bytes"),
        ({"big": b"y" * MAX_HEADER_BYTES}, f"headers have {MAX_HEADER_BYTES + 3} bytes"),
    ],
)
def test_records_with_too_many_or_too_big_headers_are_too_large(
    headers: list[tuple[str, bytes]] | dict[str, bytes], detail: str
) -> None:
    with pytest.raises(TooLarge, match=f"^{detail}, the limit is"):
        parse_message(encode(VALID), 8000, headers)


def test_headers_within_the_limits_and_null_header_values_pass() -> None:
    headers = [(f"h{n}", None if n % 2 else b"v") for n in range(MAX_HEADERS)]
    assert parse_message(encode(VALID), 8000, headers).message_id == "m-1"


def test_a_value_over_the_byte_limit_is_too_large_before_it_is_parsed() -> None:
    with pytest.raises(TooLarge, match=f"^value has {MAX_VALUE_BYTES + 1} bytes"):
        parse_message(b"{" * (MAX_VALUE_BYTES + 1), 8000)


def test_dead_letter_of_an_oversized_value_says_the_raw_bytes_are_not_copied() -> None:
    source = SourcePosition(topic="t", partition=0, offset=3)
    kept = DeadLetter.build("too_large", "big", source, b"x" * MAX_VALUE_BYTES)
    omitted = DeadLetter.build("too_large", "bigger", source, b"x" * (MAX_VALUE_BYTES + 1))
    assert (len(kept.raw_b64) > 0, kept.raw_omitted) == (True, False)
    assert (omitted.raw_b64, omitted.raw_omitted) == ("", True)
    # Within the producer's 1 MiB request limit, with room for the envelope:
    assert len(kept.model_dump_json()) < 1024 * 1024 - 4096
