"""Records as real producers write them: every codec, undecodable batches, Kafka-level oddities.

The producer is librdkafka (confluent-kafka), the client behind most non-Java producers.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import aiokafka.codec
import pytest
from aiokafka.errors import UnsupportedCodecError

from tests.helpers.kafka import RdRecord, at_least, json_values, rd_produce, rd_read, read_topic
from tests.helpers.polling import until
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import WorkerFactory

pytestmark = pytest.mark.e2e

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
# Loaded by the worker's interpreter at start (site imports it from PYTHONPATH): a worker
# built without lz4 support, as aiokafka is without its codec extras.
WITHOUT_LZ4 = "import aiokafka.codec\naiokafka.codec.has_lz4 = lambda: False\n"


# Compressible, so that librdkafka compresses it (it sends a batch that would not shrink as it is).
ORDER_QUESTION = "Where is my order? I ordered it last week and it has not arrived yet. " * 4


def message(message_id: str, conversation_id: str, text: str = ORDER_QUESTION) -> bytes:
    return json.dumps({"message_id": message_id, "conversation_id": conversation_id, "text": text}).encode()


def record(message_id: str, partition: int, **fields: Any) -> RdRecord:
    conversation = f"conv-{message_id}"
    return (
        fields.get("key", conversation),
        fields.get("value", message(message_id, conversation)),
        partition,
        fields.get("headers", []),
    )


async def readiness(web_url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{web_url}/readyz") as response:
        return response.status, await response.json()


async def metrics_text(web_url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{web_url}/metrics") as response:
        return await response.text()


@pytest.mark.parametrize("reply_codec", CODECS)
async def test_every_codec_is_read_and_replies_are_produced_with_the_chosen_one(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    monkeypatch: pytest.MonkeyPatch,
    reply_codec: str,
) -> None:
    worker = await worker_factory({"ENRICHER_PRODUCER_COMPRESSION": reply_codec})
    for partition, codec in enumerate(CODECS):
        await rd_produce(kafka, enricher_env["ENRICHER_INPUT_TOPIC"], [record(codec, partition)], codec)

    replies = await rd_read(kafka, enricher_env["ENRICHER_REPLY_TOPIC"], len(CODECS))
    all_replies = await read_topic(kafka, enricher_env["ENRICHER_REPLY_TOPIC"], caught_up=enricher_env)

    assert sorted(json.loads(r.value())["message_id"] for r in replies) == sorted(CODECS)
    assert len(all_replies) == len(CODECS)
    assert all(json.loads(r.value())["status"] == "ok" for r in replies)
    assert {r.key() for r in replies} == {f"conv-{codec}".encode() for codec in CODECS}
    assert worker.process.poll() is None
    # Proof of the codecs on the wire: a reader without one cannot decode what used it.
    reply_codecs = await codecs_needed(kafka, enricher_env["ENRICHER_REPLY_TOPIC"], monkeypatch)
    assert reply_codecs == ({reply_codec} - {"none"})
    if reply_codec == "none":
        assert await codecs_needed(kafka, enricher_env["ENRICHER_INPUT_TOPIC"], monkeypatch) == set(
            CODECS[1:]
        )


async def codecs_needed(kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The codecs without which `topic` cannot be read, found by reading it without each in turn."""
    needed: dict[str, str] = {}
    for codec in CODECS[1:]:
        with monkeypatch.context() as patch:
            patch.setattr(aiokafka.codec, f"has_{codec}", lambda: False)
            try:
                await read_topic(kafka, topic, at_least(len(CODECS)), timeout_s=10)
            except UnsupportedCodecError as error:  # plain aiokafka, as any reader has it
                needed[codec] = str(error)
    assert all(codec in message for codec, message in needed.items()), needed
    return set(needed)


@SEVERAL_PROCESSES
async def test_a_partition_that_cannot_be_decoded_is_paused_and_reported_while_the_rest_goes_on(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    topic = enricher_env["ENRICHER_INPUT_TOPIC"]
    shim = tmp_path / "without-lz4"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(WITHOUT_LZ4)
    crippled = await worker_factory(
        {"PYTHONPATH": str(shim), "ENRICHER_PRODUCER_COMPRESSION": "gzip"}, ready=False
    )
    await worker_factory.wait_ready(crippled)
    await rd_produce(kafka, topic, [record("before", 3)])
    await rd_produce(kafka, topic, [record("lz4", 3)], "lz4")
    await rd_produce(kafka, topic, [record("after", 3)])
    others = [record(f"other-{p}", p) for p in (0, 1, 2, 4, 5, 6, 7)]
    await rd_produce(kafka, topic, others, "gzip")

    await read_topic(kafka, enricher_env["ENRICHER_REPLY_TOPIC"], at_least(8))

    async def paused() -> bool:
        status, body = await readiness(crippled.web_url)
        return status == 503 and "partitions" in body["reasons"]

    await until(paused, "readiness reports the paused partition")
    # Paused at the batch: nothing after it can be answered, so the topic's end is exact.
    records = await read_topic(kafka, enricher_env["ENRICHER_REPLY_TOPIC"])
    answered = sorted(r["message_id"] for r in json_values(records))
    assert answered == sorted(["before"] + [f"other-{p}" for p in (0, 1, 2, 4, 5, 6, 7)])
    assert crippled.process.poll() is None
    _, body = await readiness(crippled.web_url)
    assert body["reasons"]["partitions"].startswith(f"{topic}[3] paused at offset 1: UnsupportedCodecError: ")
    assert f'enricher_kafka_partitions_unreadable{{partition="3",topic="{topic}"}} 1.0' in (
        await metrics_text(crippled.web_url)
    )
    log = crippled.process.log_tail(200)
    assert "partition paused: a record batch cannot be decoded" in log
    assert crippled.stop() == 0

    # Nothing was committed past the batch: a worker that can read lz4 answers it and the next.
    await worker_factory()
    records = await read_topic(
        kafka, enricher_env["ENRICHER_REPLY_TOPIC"], at_least(10), caught_up=enricher_env
    )
    answered = sorted(r["message_id"] for r in json_values(records))
    assert answered == sorted(["before", "lz4", "after"] + [f"other-{p}" for p in (0, 1, 2, 4, 5, 6, 7)])


async def test_kafka_level_bad_records_are_dead_lettered_and_their_neighbours_answered(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory
) -> None:
    await worker_factory()
    huge_text = "x" * (3 * 1024 * 1024)
    records = [
        record("first", 0),
        record("tombstone", 0, value=None),
        record("null-key", 0, key=None),
        record("first-neighbour", 0),
        record("bad-key", 0, key=b"\xff\xfe not utf-8"),
        record("huge-value", 0, value=message("huge-value", "conv-huge-value", huge_text)),
        record("many-headers", 0, headers=[(f"h{n}", b"v") for n in range(200)]),
        record("huge-header", 0, headers=[("big", b"y" * 200_000)]),
        record("last", 0),
    ]
    await rd_produce(kafka, enricher_env["ENRICHER_INPUT_TOPIC"], records, "lz4")

    replies_raw = await read_topic(
        kafka, enricher_env["ENRICHER_REPLY_TOPIC"], at_least(5), caught_up=enricher_env
    )
    replies = json_values(replies_raw)
    letters = await read_topic(kafka, enricher_env["ENRICHER_DLQ_TOPIC"])

    assert sorted(r["message_id"] for r in replies) == sorted(
        ["first", "null-key", "first-neighbour", "bad-key", "last"]
    )
    # an odd key is not the conversation: replies are keyed by the message's conversation_id
    assert {r.key for r in replies_raw} == {f"conv-{r['message_id']}".encode() for r in replies}
    by_offset = {json.loads(r.value)["source"]["offset"]: (r.key, json.loads(r.value)) for r in letters}
    assert sorted(by_offset) == [1, 5, 6, 7]
    key, tombstone = by_offset[1]
    assert (key, tombstone["error"]["kind"], tombstone["raw_b64"]) == (b"conv-tombstone", "invalid_json", "")
    _, huge = by_offset[5]
    assert huge["error"]["kind"] == "too_large"
    assert huge["error"]["detail"].startswith("value has ")
    assert (huge["raw_b64"], huge["raw_omitted"]) == ("", True)
    for offset, detail in ((6, "record has 200 headers"), (7, "headers have 200003 bytes")):
        _, letter = by_offset[offset]
        assert letter["error"]["kind"] == "too_large"
        assert letter["error"]["detail"].startswith(detail)
        assert base64.b64decode(letter["raw_b64"]) == records[offset][1]
        assert letter["raw_omitted"] is False
