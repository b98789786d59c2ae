"""`enricher dlq list|show` and the filters of every `dlq` command, on the real broker and Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from app.schemas import rfc3339, utc_now
from tests.helpers.dead_letters import clean_environ, dead_letter, invoke_dlq, message
from tests.helpers.dev_only import BLOCK_DEV_ONLY
from tests.helpers.kafka import rd_produce, read_topic


@pytest.fixture
async def letters(kafka: str, enricher_env: dict[str, str]) -> dict[str, str]:
    """Four dead letters of the test's input topic, one record that is none; their ids by name."""
    inputs, now = enricher_env["ENRICHER_INPUT_TOPIC"], utc_now()
    await rd_produce(
        kafka,
        enricher_env["ENRICHER_DLQ_TOPIC"],
        [
            dead_letter("invalid_json", b"\xff\xfe", source_topic=inputs, failed_at=now - timedelta(days=2)),
            dead_letter("too_large", b"x" * 100, source_topic=inputs, failed_at=now - timedelta(hours=3)),
            dead_letter("llm_unavailable", message("m-1", "c-1"), source_topic=inputs, partition=2),
            dead_letter("invalid_message", b"[]", source_topic=inputs, partition=2, key=None),
            (None, b"not a dead letter", 4, []),
        ],
    )
    return {"old": "0:0", "large": "0:1", "down": "2:0", "shape": "2:1", "junk": "4:0"}


def ids_listed(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()[:-1]]


async def test_list_prints_a_line_per_dead_letter_oldest_first_and_a_total(
    enricher_env: dict[str, str], letters: dict[str, str]
) -> None:
    listed = await invoke_dlq(enricher_env, "list")

    assert listed.exit_code == 0, listed.output
    *lines, total = listed.stdout.splitlines()
    assert ids_listed(listed.stdout) == ["0:0", "0:1", "2:0", "2:1"]
    assert total == f"4 dead letters in {enricher_env['ENRICHER_DLQ_TOPIC']}; not dead letters, left out: 4:0"
    down = lines[2].split()
    assert (down[2], down[3], " ".join(down[4:])) == (
        "llm_unavailable",
        "c-1",
        "llm_unavailable for the test",
    )
    assert lines[3].split()[3] == "-"  # no key
    details = {line.rindex(f"{line.split()[2]} for the test") for line in lines}
    assert len(details) == 1  # the columns line up, whatever the width of each key


async def test_show_prints_the_whole_record_with_its_input_decoded(
    enricher_env: dict[str, str], letters: dict[str, str]
) -> None:
    shown = await invoke_dlq(enricher_env, "show", letters["down"])
    binary = await invoke_dlq(enricher_env, "show", letters["old"])
    unknown = await invoke_dlq(enricher_env, "show", "7:70")

    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)
    assert record["id"] == "2:0"
    assert record["key"] == "c-1"
    assert record["error"] == {"kind": "llm_unavailable", "detail": "llm_unavailable for the test"}
    assert record["raw"] == json.loads(message("m-1", "c-1"))
    assert record["headers"]["tracestate"] == "vendor=1"
    assert {"source", "raw_b64", "failed_at", "raw_omitted"} <= record.keys()
    assert json.loads(binary.stdout)["raw"] is None  # not UTF-8: only raw_b64 has it
    assert (unknown.exit_code, unknown.stderr) == (
        1,
        f"enricher: no dead letter 7:70 in {enricher_env['ENRICHER_DLQ_TOPIC']}\n",
    )


@pytest.mark.parametrize(
    ("options", "chosen"),
    [
        (["--kind", "invalid_json"], ["old"]),
        (["--kind", "too_large", "--kind", "llm_unavailable"], ["large", "down"]),
        (["--since", "1d"], ["large", "down", "shape"]),
        (["--since", "30m"], ["down", "shape"]),
        (["--since", "150m", "--kind", "too_large"], []),
        (
            ["--since", (utc_now() - timedelta(hours=4)).replace(tzinfo=None).isoformat()],
            ["large", "down", "shape"],
        ),
        (["--since", rfc3339(utc_now() - timedelta(hours=1))], ["down", "shape"]),
    ],
)
async def test_the_filters_choose_the_dead_letters_listed_and_replayed(
    enricher_env: dict[str, str], letters: dict[str, str], options: list[str], chosen: list[str]
) -> None:
    listed = await invoke_dlq(enricher_env, "list", *options)
    dry = await invoke_dlq(enricher_env, "replay", "--dry-run", *options)

    assert listed.exit_code == 0, listed.output
    assert ids_listed(listed.stdout) == [letters[name] for name in chosen]
    assert listed.stdout.splitlines()[-1].startswith(f"{len(chosen)} of 4 dead letters")
    assert dry.exit_code == 0, dry.output
    assert [line.split()[2].rstrip(":") for line in dry.stdout.splitlines()[:-1]] == [
        letters[n] for n in chosen
    ]


async def test_replay_by_id_takes_just_those_and_refuses_an_unknown_one(
    enricher_env: dict[str, str], letters: dict[str, str]
) -> None:
    by_id = await invoke_dlq(enricher_env, "replay", "--dry-run", "--id", "2:1", "--id", "0:1")
    unknown = await invoke_dlq(enricher_env, "replay", "--id", "2:1", "--id", "9:9")

    assert by_id.stdout.splitlines()[-1].endswith("would replay 2 (0:1 2:1), already replayed 0, skipped 0")
    assert (unknown.exit_code, unknown.stdout) == (1, "")
    assert (
        unknown.stderr
        == f"enricher: no dead letter 9:9 in {enricher_env['ENRICHER_DLQ_TOPIC']}; nothing replayed\n"
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["list", "--kind", "bogus"], "--kind 'bogus' is not a dead-letter kind; one of invalid_json, "),
        (
            ["replay", "--since", "yesterday"],
            "--since 'yesterday' is neither an ISO-8601 time nor a duration",
        ),
        (["show", "17"], "dead-letter id '17' is not partition:offset, e.g. 0:17"),
        (["replay", "--id", "0:1", "--id", "a:b"], "dead-letter id 'a:b' is not partition:offset"),
    ],
)
async def test_a_bad_option_exits_2_with_one_line(args: list[str], line: str) -> None:
    result = await invoke_dlq({}, *args)  # refused before any setting is read

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"enricher: {line}")


async def test_a_missing_topic_or_broker_exits_1_with_one_line(enricher_env: dict[str, str]) -> None:
    missing = await invoke_dlq(enricher_env | {"ENRICHER_DLQ_TOPIC": "no-such-dlq"}, "list")
    no_broker = await invoke_dlq(enricher_env | {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, "list")

    assert (missing.exit_code, missing.stderr) == (1, "enricher: topic no-such-dlq does not exist\n")
    assert no_broker.exit_code == 1
    assert len(no_broker.stderr.splitlines()) == 1, no_broker.stderr


async def test_replay_without_redis_stops_with_one_line_and_replays_nothing(
    kafka: str, enricher_env: dict[str, str], letters: dict[str, str]
) -> None:
    result = await invoke_dlq(enricher_env | {"REDIS_URL": "redis://127.0.0.1:9/0"}, "replay")

    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["replayed 0, already replayed 0, skipped 0"]
    assert result.stderr.startswith("enricher: replay stopped: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert await read_topic(kafka, enricher_env["ENRICHER_INPUT_TOPIC"]) == []


async def test_list_runs_without_the_development_stack(
    enricher_env: dict[str, str], letters: dict[str, str], tmp_path: Path
) -> None:
    code = BLOCK_DEV_ONLY + "from app.main import cli; cli(['dlq', 'list'])"
    argv = [sys.executable, "-c", code]
    env = clean_environ(enricher_env)
    run = await asyncio.to_thread(
        subprocess.run, argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )

    assert run.returncode == 0, run.stderr
    assert ids_listed(run.stdout) == ["0:0", "0:1", "2:0", "2:1"]
