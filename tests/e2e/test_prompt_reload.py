"""Hot reload in a running worker under load: an edit changes the replies, a broken edit changes nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from app.prompts.library import PromptLibrary
from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import every_message_answered, metric
from tests.helpers.files import save
from tests.helpers.kafka import (
    Predicate,
    answered,
    answering_at_least,
    json_values,
    producing,
    read_topic,
    send_all,
)
from tests.helpers.polling import until
from tests.helpers.timeouts import UNDER_LOAD
from tests.helpers.workers import REPO, Worker, WorkerFactory

pytestmark = pytest.mark.e2e

CONVERSATIONS = 10
MARKER = "EDITED"
# Well below the test's 60 s, so that a stalled stage names the messages it waits for before
# the test's timeout cuts it short (the stages before it and the worker's start take up to 20 s).
# The whole test takes 13 to 16 s on a loaded 2-core machine, 27 s beside two more copies of it.
REPLIES_TIMEOUT_S = 30


class Load:
    """Produces customer messages in small batches, remembering when each was sent."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.sent_at: dict[str, float] = {}

    async def send(self, prefix: str, count: int, per_batch: int = 5, pause_s: float = 0.1) -> list[str]:
        """Send `count` messages over about `count / per_batch * pause_s` seconds; their ids."""
        ids = [f"{prefix}-{n}" for n in range(count)]
        for start in range(0, count, per_batch):
            batch = ids[start : start + per_batch]
            self.sent_at.update(dict.fromkeys(batch, time.monotonic()))
            await send_all(self.producer, self.topic, [self._record(message_id) for message_id in batch])
            await asyncio.sleep(pause_s)
        return ids

    @staticmethod
    def _record(message_id: str) -> tuple[str, bytes]:
        conversation = f"conv-{int(message_id.rsplit('-', 1)[1]) % CONVERSATIONS}"
        document = {
            "message_id": message_id,
            "conversation_id": conversation,
            "text": f"Question {message_id}",
        }
        return conversation, json.dumps(document).encode()


@pytest.fixture
async def load(kafka: str, enricher_env: dict[str, str]) -> AsyncIterator[Load]:
    """A Load on the test's input topic, over one producer."""
    async with producing(kafka) as producer:
        yield Load(producer, enricher_env["ENRICHER_INPUT_TOPIC"])


def version_of(path: Path) -> str:
    return next(t.version for t in PromptLibrary.load(path.parent).templates if t.path == path)


async def replies_to(kafka: str, topic: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The reply answering each of `ids` (the topic holds replies to earlier messages too; one
    reply answers several messages of a conversation that queued behind its last reply); a
    TimeoutError naming the ids still without one after REPLIES_TIMEOUT_S."""
    wanted = set(ids)

    def by_message(records: Sequence[ConsumerRecord]) -> dict[str, dict[str, Any]]:
        return {message: r for r in json_values(records) for message in r["answers"] if message in wanted}

    all_answered = every_message_answered(wanted)
    try:
        records = await read_topic(kafka, topic, until=all_answered, timeout_s=REPLIES_TIMEOUT_S)
    except TimeoutError:
        seen = by_message(await read_topic(kafka, topic)).keys()
        raise TimeoutError(f"no reply within {REPLIES_TIMEOUT_S} s to {sorted(wanted - seen)}") from None
    return by_message(records)


async def logged(worker: Worker, text: str) -> bool:
    """Whether the worker's log holds `text`."""
    assert worker.process.log_path is not None
    return text in worker.process.log_path.read_text(encoding="utf-8")


def replied_to(prefix: str) -> Predicate:
    """A `read_topic` condition: a reply to a message whose id starts with `prefix`."""
    return lambda records: any(r["message_id"].startswith(prefix) for r in json_values(records))


@UNDER_LOAD
async def test_edits_reload_under_load_and_a_broken_edit_changes_nothing(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    load: Load,
    tmp_path: Path,
) -> None:
    env = enricher_env
    prompts = Path(shutil.copytree(REPO / "prompts", tmp_path / "prompts"))
    template = prompts / "support_reply.j2"  # messages without a customer get this one
    original = template.read_text(encoding="utf-8")
    first_version = version_of(template)
    await mock_admin.config(latency_ms=20, jitter_ms=10)
    worker = await worker_factory({"ENRICHER_PROMPTS_DIR": str(prompts)})
    replies_topic = env["ENRICHER_REPLY_TOPIC"]

    before = await replies_to(kafka, replies_topic, await load.send("before", 20, per_batch=20))
    assert {r["prompt"]["version"] for r in before.values()} == {first_version}

    # A good edit while messages keep coming: made once the first of them is answered, so some
    # are answered before it; those sent after the worker logs the new version are answered with it.
    during = asyncio.create_task(load.send("during", 150))
    await read_topic(kafka, replies_topic, until=replied_to("during-"))
    save(template, original.replace("{{ message.text }}", f"{MARKER} {{{{ message.text }}}}"))
    edited_version = version_of(template)
    await until(partial(logged, worker, edited_version), "the worker logs the edited template's version")
    reloaded_at = time.monotonic()
    sent = await during + await load.send("after", 10, per_batch=10)
    during_replies = await replies_to(kafka, replies_topic, sent)

    assert {r["prompt"]["version"] for r in during_replies.values()} == {first_version, edited_version}
    for message_id, reply in during_replies.items():
        assert reply["prompt"]["name"] == "support_reply"
        assert reply["prompt"]["version"] in (first_version, edited_version)
        assert (MARKER in reply["text"]) == (reply["prompt"]["version"] == edited_version), reply
        if load.sent_at[message_id] > reloaded_at:
            assert reply["prompt"]["version"] == edited_version, f"{message_id} still on the old template"
    assert _never_back_to_the_old_version(list(during_replies.values()), edited_version, load.sent_at)

    # A broken edit while messages keep coming: rejected with file:line, nothing changes.
    broken = asyncio.create_task(load.send("broken", 150))
    await read_topic(kafka, replies_topic, until=replied_to("broken-"))
    save(template, template.read_text(encoding="utf-8").replace("{% endblock %}", "{% endblok %}", 1))
    await until(partial(logged, worker, f'"error": "{template}:'), "the broken edit is rejected")
    sent = await broken + await load.send("after_broken", 10, per_batch=10)
    broken_replies = await replies_to(kafka, replies_topic, sent)

    assert {r["prompt"]["version"] for r in broken_replies.values()} == {edited_version}
    assert all(MARKER in r["text"] and r["status"] == "ok" for r in broken_replies.values())
    assert await metric(worker, "enricher_template_errors_total") == 1

    # No message lost or answered twice, none dead-lettered.
    everything = json_values(
        await read_topic(kafka, replies_topic, until=answering_at_least(len(load.sent_at)), caught_up=env)
    )
    assert sorted(answered(everything)) == sorted(load.sent_at)
    assert await read_topic(kafka, env["ENRICHER_DLQ_TOPIC"]) == []


def _never_back_to_the_old_version(
    replies: list[dict[str, Any]], edited_version: str, sent_at: dict[str, float]
) -> bool:
    """Within each conversation, replies made with the edited template are never followed by old ones."""

    def sent_order(reply: dict[str, Any]) -> tuple[float, int]:
        return sent_at[reply["message_id"]], int(reply["message_id"].rsplit("-", 1)[1])

    versions: dict[str, list[bool]] = defaultdict(list)
    for reply in sorted(replies, key=sent_order):
        versions[reply["conversation_id"]].append(reply["prompt"]["version"] == edited_version)
    return all(flags == sorted(flags) for flags in versions.values())
