"""`enricher handoff release CONV` on the real broker: the record it produces, and how it fails."""

from __future__ import annotations

import json

from tests.helpers.cli import invoke
from tests.helpers.kafka import read_topic


async def test_release_produces_the_command_keyed_by_the_conversation(
    kafka: str, enricher_env: dict[str, str]
) -> None:
    topic = enricher_env["ENRICHER_CONTROL_TOPIC"]

    result = await invoke(enricher_env, "handoff", "release", "conv-42")

    assert result.exit_code == 0, result.output
    [record] = await read_topic(kafka, topic)  # the command has ended: its record is there, once
    assert record.key == b"conv-42"
    assert json.loads(record.value) == {"command": "release", "conversation_id": "conv-42"}
    assert result.stdout == (
        f"release of conversation conv-42 sent to {topic}[{record.partition}]@{record.offset}; "
        "a worker gives it back to the AI\n"
    )


async def test_an_unreachable_broker_exits_1_with_one_line(enricher_env: dict[str, str]) -> None:
    result = await invoke(
        enricher_env | {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, "handoff", "release", "c-1"
    )

    assert result.exit_code == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    topic = enricher_env["ENRICHER_CONTROL_TOPIC"]
    assert result.stderr.startswith(f"enricher: release of c-1 not sent to {topic} on 127.0.0.1:9: ")


async def test_a_missing_control_topic_exits_1_and_is_not_created(
    kafka: str, enricher_env: dict[str, str]
) -> None:
    missing = f"{enricher_env['ENRICHER_APP_ID']}.no-such-control"

    result = await invoke(enricher_env | {"ENRICHER_CONTROL_TOPIC": missing}, "handoff", "release", "c-1")

    assert result.exit_code == 1
    assert (
        result.stderr
        == f"enricher: release of c-1 not sent to {missing} on {kafka}: topic {missing} does not exist\n"
    )
    again = await invoke(enricher_env | {"ENRICHER_CONTROL_TOPIC": missing}, "handoff", "release", "c-1")
    assert again.exit_code == 1  # the first try did not create it


async def test_an_empty_conversation_id_exits_2_before_any_setting_is_read() -> None:
    result = await invoke({}, "handoff", "release", "")

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == "enricher: CONV: String should have at least 1 character\n"
