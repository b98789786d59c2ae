"""The help-center in a running worker: the right article in the reply's `sources` and its passage in
the prompt the LLM got; an edited article served from the reload on; a broken one rejected with its
file:line while the last good articles keep serving."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.delivery import metric
from tests.helpers.files import save
from tests.helpers.kafka import json_values, produce_many, read_topic
from tests.helpers.messages import request, requests_for
from tests.helpers.polling import until
from tests.helpers.workers import REPO, Worker, WorkerFactory

pytestmark = pytest.mark.e2e

QUESTIONS = (
    "Can I return shoes after 40 days?",
    "Can I still send boots back after 40 days?",
    "Can I return a jacket 45 days after delivery?",
)
EDITED = "Returns now need a reference code KX-7731 written on the box."


async def reply_to(kafka: str, env: dict[str, str], message_id: str, text: str) -> dict[str, Any]:
    """Send `text` as `message_id` and wait for its reply."""
    await produce_many(kafka, env["ENRICHER_INPUT_TOPIC"], [request(message_id, f"c-{message_id}", text)])

    def answered(records: Any) -> bool:
        return any(r["message_id"] == message_id for r in json_values(records))

    records = await read_topic(kafka, env["ENRICHER_REPLY_TOPIC"], until=answered)
    return next(r for r in json_values(records) if r["message_id"] == message_id)


async def prompt_of(mock_admin: MockAdmin, text: str) -> str:
    """The user part of the prompt the mock LLM got for `text`."""
    [asked] = requests_for(await mock_admin.requests(), text)
    return str(asked["messages"][-1]["content"])


async def logged(worker: Worker, text: str) -> bool:
    """Whether the worker's log holds `text`."""
    assert worker.process.log_path is not None
    return text in worker.process.log_path.read_text(encoding="utf-8")


async def test_the_right_article_is_cited_and_reloaded_while_the_worker_runs(
    kafka: str,
    enricher_env: dict[str, str],
    worker_factory: WorkerFactory,
    mock_admin: MockAdmin,
    tmp_path: Path,
) -> None:
    knowledge = Path(shutil.copytree(REPO / "knowledge", tmp_path / "knowledge"))
    article = knowledge / "en" / "returns-policy.md"
    worker = await worker_factory({"ENRICHER_KNOWLEDGE_DIR": str(knowledge)})

    first = await reply_to(kafka, enricher_env, "m-1", QUESTIONS[0])
    assert first["status"] == "ok"
    assert first["sources"][0]["id"] == "returns-policy"
    assert first["sources"][0]["title"] == "Our returns policy"
    prompt = await prompt_of(mock_admin, QUESTIONS[0])
    assert "After the 30-day window we can no longer accept a return" in prompt
    assert 'id="returns-policy"' in prompt
    assert 'From our help-center ("Our returns policy")' in first["text"]  # the mock answers from it
    # The passages' cost: their tokens in the reply's usage and in the histogram.
    assert 0 < first["usage"]["knowledge_tokens"] < first["usage"]["prompt_tokens"]
    assert await metric(worker, "enricher_knowledge_tokens_sum") == first["usage"]["knowledge_tokens"]

    # An edit while the worker runs: the passage the next prompt carries is the new text.
    original = article.read_text(encoding="utf-8")
    edited = original.replace("After the 30-day window we can no longer", f"{EDITED} After 30 days we cannot")
    save(article, edited)
    await until(partial(logged, worker, "knowledge reloaded"), "the worker reloads the help-center")
    await reply_to(kafka, enricher_env, "m-2", QUESTIONS[1])
    assert EDITED in await prompt_of(mock_admin, QUESTIONS[1])

    # A broken edit: rejected with its file:line, the edited articles keep serving.
    save(article, edited.replace("id: returns-policy", "id: returns policy!"))
    await until(partial(logged, worker, f'"error": "{article}:2'), "the broken article is rejected")

    async def counted() -> bool:  # after the log line, in the reload's thread
        return await metric(worker, "enricher_template_errors_total") == 1

    await until(counted, "the rejection counted")
    third = await reply_to(kafka, enricher_env, "m-3", QUESTIONS[2])
    assert "returns-policy" in [source["id"] for source in third["sources"]]
    assert EDITED in await prompt_of(mock_admin, QUESTIONS[2])


async def test_a_message_the_help_center_does_not_cover_has_no_sources(
    kafka: str, enricher_env: dict[str, str], worker_factory: WorkerFactory, mock_admin: MockAdmin
) -> None:
    worker = await worker_factory()
    reply = await reply_to(kafka, enricher_env, "m-1", "hello")
    assert reply["sources"] == []
    assert reply["usage"]["knowledge_tokens"] == 0
    assert await metric(worker, "enricher_knowledge_tokens_count") == 1
    assert "help-center" not in json.dumps(await mock_admin.requests())
