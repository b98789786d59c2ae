"""The control topic's records: what a release command is on the wire, and what is none."""

from __future__ import annotations

import pytest

from app.errors import BadInput, InvalidJson, InvalidMessage
from app.handoff import ControlCommand, parse_command


def test_a_release_round_trips_keyed_by_its_conversation() -> None:
    command = ControlCommand.release("c-1")

    assert (command.key(), command.value()) == (b"c-1", b'{"command":"release","conversation_id":"c-1"}')
    assert parse_command(command.value()) == command


def test_unknown_fields_are_ignored() -> None:
    raw = b'{"command": "release", "conversation_id": "c-1", "by": "agent-7"}'

    assert parse_command(raw) == ControlCommand.release("c-1")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (None, InvalidJson),
        (b"\xff", InvalidJson),
        (b"{not json", InvalidJson),
        (b'["release", "c-1"]', InvalidMessage),
        (b'{"command": "hand_over", "conversation_id": "c-1"}', InvalidMessage),
        (b'{"command": "release"}', InvalidMessage),
        (b'{"command": "release", "conversation_id": ""}', InvalidMessage),
        (b'{"command": "release", "conversation_id": 7}', InvalidMessage),
    ],
    ids=[
        "tombstone",
        "not UTF-8",
        "not JSON",
        "array",
        "unknown command",
        "no id",
        "empty id",
        "id not text",
    ],
)
def test_a_record_that_is_no_command_is_bad_input_of_its_kind(
    raw: bytes | None, error: type[BadInput]
) -> None:
    with pytest.raises(error):
        parse_command(raw)
