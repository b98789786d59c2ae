"""The template studio's endpoints on a real gateway: the broker, Redis and the mock LLM over HTTP.

The tests share one gateway, its topics and Redis database (`shared_gateway`): none of them
changes what another reads, and the messages they post go to conversations of their own.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from devstack.mock_llm.admin import MockAdmin
from devstack.processes import free_port
from tests.helpers import studio_drafts as drafts
from tests.helpers.browser import put_profiles
from tests.helpers.credentials import STAFF
from tests.helpers.gateway import Gateway, post_messages
from tests.helpers.template_cases import UNBOUNDED_REASONS
from tests.helpers.workers import PROMPTS

TIMEOUT_S = 30.0
# A draft that never ends is refused once the sandbox's child is killed (WALL_LIMIT_S, 4 s); the
# rest is room for a machine running the suite in four processes. A gateway that froze while the
# draft ran would leave /healthz unanswered for those 4 s, past HEALTHZ_S.
DRAFT_ANSWER_S = 15.0
HEALTHZ_S = 2.0


def _client(gateway: Gateway) -> httpx.AsyncClient:
    """A client of the gateway as the tests' staff member."""
    return httpx.AsyncClient(base_url=gateway.url, timeout=TIMEOUT_S, headers=STAFF)


async def test_the_templates_are_listed_with_conditions_and_token_counts(shared_gateway: Gateway) -> None:
    async with _client(shared_gateway) as client:
        listing = (await client.get("/api/studio/templates")).json()
    files = {t["file"]: t for t in listing["templates"]}
    assert {"support_reply.j2", "support_reply_gold.j2", "fallback.j2", "handoff.j2"} <= set(files)
    gold = files["support_reply_gold.j2"]
    assert (gold["conditions"]["tier"], gold["kind"]) == ("gold", "reply")
    assert (files["fallback.j2"]["kind"], files["handoff.j2"]["kind"]) == ("fallback", "handoff")
    assert gold["tokens"]["returning_customer.yaml"] > 50
    assert gold["source"] == (PROMPTS / "support_reply_gold.j2").read_text(encoding="utf-8")
    assert listing["problems"] == []


async def test_a_broken_file_is_listed_as_a_problem_with_its_line(
    shared_chat_env: dict[str, str], tmp_path: Path
) -> None:
    directory = tmp_path / "prompts"
    shutil.copytree(PROMPTS, directory)
    (directory / "broken.j2").write_text(
        "---\nname: broken\ndescription: x\nwen: {}\n---\n{% block reply %}{% endblock %}\n"
    )
    # A gateway of its own, on another port, for its own prompts directory; the gateway reads
    # without a consumer group, so it shares the topics with the module's gateway harmlessly.
    own = {"ENRICHER_CHAT_PORT": str(free_port()), "ENRICHER_PROMPTS_DIR": str(directory)}
    gateway = Gateway(shared_chat_env | own, tmp_path / "chat.log")
    await gateway.start()
    try:
        async with _client(gateway) as client:
            listing = (await client.get("/api/studio/templates")).json()
    finally:
        gateway.stop()
    [problem] = listing["problems"]
    assert (problem["file"], problem["line"]) == ("broken.j2", 4), problem
    assert problem["location"] == f"{directory / 'broken.j2'}:4"
    assert "`wen` is not a known field" in problem["reason"]
    assert "support_reply.j2" in {t["file"] for t in listing["templates"]}  # the others still load


async def test_render_shows_the_messages_for_the_customer_with_token_counts(
    shared_gateway: Gateway, shared_chat_env: dict[str, str]
) -> None:
    await put_profiles(shared_chat_env["REDIS_URL"])
    text = "Where is my parcel? Mail me at ada@example.org"
    body = {"template": "support_reply.j2", "text": text, "customer_id": "cust-1"}
    async with _client(shared_gateway) as client:
        response = await client.post("/api/studio/render", json=body)
    assert response.status_code == 200, response.text
    shown = response.json()
    roles = [m["role"] for m in shown["messages"]]
    assert (roles[0], roles[-1]) == ("system", "user"), roles
    assert "- name: Ada Lovelace" in shown["messages"][0]["content"]
    asked = "<customer_message>\nWhere is my parcel? Mail me at [EMAIL_1]\n</customer_message>"
    assert asked in shown["messages"][-1]["content"]
    assert "ada@example.org" not in response.text
    assert all(m["tokens"] > 0 for m in shown["messages"])
    assert shown["prompt_tokens"] > sum(
        m["tokens"] for m in shown["messages"]
    )  # plus the per-message framing
    assert shown["worker_choice"] == "support_reply_gold.j2"  # Ada is gold
    assert shown["masked"] is True


async def test_render_masks_the_profile_as_the_worker_does(
    shared_gateway: Gateway, shared_chat_env: dict[str, str]
) -> None:
    async with aioredis.from_url(shared_chat_env["REDIS_URL"]) as redis:
        await redis.hset("customer:cust-pii", mapping={"name": "Ada ada.l@example.org", "tier": "silver"})
    text = "Is ada.l@example.org on file?"
    body = {"template": "support_reply.j2", "text": text, "customer_id": "cust-pii"}
    async with _client(shared_gateway) as client:
        response = await client.post("/api/studio/render", json=body)
    assert response.status_code == 200, response.text
    messages = response.json()["messages"]
    assert "- name: Ada [EMAIL_1]" in messages[0]["content"]  # the message's placeholder, as the worker's
    assert "[EMAIL_1] on file?" in messages[-1]["content"]
    assert not any("ada.l@example.org" in m["content"] for m in messages)


async def test_a_draft_is_tried_on_the_newest_messages_next_to_the_current_template(
    shared_gateway: Gateway, shared_chat_env: dict[str, str], mock_admin: MockAdmin
) -> None:
    await put_profiles(shared_chat_env["REDIS_URL"])
    texts = ["Too old to be tried", "Where is my order?", "Can I get a refund?", "My card was declined"]
    async with _client(shared_gateway) as client:
        await post_messages(client, texts)
        body = {"template": drafts.FILE, "draft": drafts.DRAFT, "n": 3}
        response = await client.post("/api/studio/try", json=body)
    assert response.status_code == 200, response.text
    tried = response.json()
    results: list[dict[str, Any]] = tried["results"]
    assert [r["text"] for r in results] == texts[1:]
    for result in results:
        current, draft = result["current"], result["draft"]
        assert current["text"].startswith("Hi Ada Lovelace,"), current
        assert draft["text"].startswith(f"Hi {drafts.PERSONA},"), draft
        assert result["text"] in current["text"]  # the mock quotes the message it answers
        assert result["text"] in draft["text"]
        assert draft["version"] != current["version"]
        for side in (current, draft):
            assert min(side["prompt_tokens"], side["completion_tokens"]) > 0, side
            assert side["cost_usd"] > 0  # the mock answers as gpt-4o-mini, which has a price
        assert draft["prompt_tokens"] > current["prompt_tokens"]  # the draft's extra line
    assert tried["llm_calls"] == 6
    assert len(await mock_admin.requests()) == 6
    assert (PROMPTS / drafts.FILE).read_text(encoding="utf-8") == drafts.CURRENT  # nothing written


@pytest.mark.parametrize("n", [0, 11])
async def test_a_number_of_messages_out_of_range_is_refused(shared_gateway: Gateway, n: int) -> None:
    async with _client(shared_gateway) as client:
        body = {"template": drafts.FILE, "draft": drafts.DRAFT, "n": n}
        response = await client.post("/api/studio/try", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["detail"].startswith("n: ")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            drafts.UNCLOSED_IF,
            drafts.UNCLOSED_IF_LINE,
            f"the {{% if %}} on line {drafts.IF_LINE} is not closed",
        ),
        (drafts.MISSPELT_FIELD, drafts.MISSPELT_FIELD_LINE, "`wen` is not a known field"),
    ],
)
async def test_a_draft_that_does_not_load_is_refused_with_its_line(
    shared_gateway: Gateway, mock_admin: MockAdmin, text: str, line: int, reason: str
) -> None:
    async with _client(shared_gateway) as client:
        response = await client.post("/api/studio/try", json={"template": drafts.FILE, "draft": text, "n": 1})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["kind"] == "draft_refused"
    [problem] = error["problems"]
    assert problem["file"] == drafts.FILE, problem
    assert reason in problem["reason"], problem
    assert problem["line"] == line, problem
    assert "enricher-draft-" not in error["detail"]  # named as the directory's file, not the scratch copy
    assert await mock_admin.requests() == []


async def _healthz_until(gateway: Gateway, done: asyncio.Event) -> int:
    """Ask /healthz again and again until `done`; each must answer 200 within HEALTHZ_S. How many
    answered."""
    answered = 0
    async with httpx.AsyncClient(base_url=gateway.url, timeout=HEALTHZ_S) as client:
        while not done.is_set():
            assert (await client.get("/healthz")).status_code == 200
            answered += 1
            await asyncio.sleep(0.05)  # pacing, not waiting: the next look follows anyway
    return answered


@pytest.mark.parametrize("case", drafts.UNBOUNDED_DRAFTS)
async def test_an_unbounded_draft_is_refused_within_seconds_while_the_gateway_answers(
    shared_gateway: Gateway, mock_admin: MockAdmin, case: str
) -> None:
    async with _client(shared_gateway) as client:
        await post_messages(client, ["Where is my order?"])
        done = asyncio.Event()
        health = asyncio.create_task(_healthz_until(shared_gateway, done))
        try:
            async with asyncio.timeout(DRAFT_ANSWER_S):
                body = {"template": drafts.FILE, "draft": drafts.UNBOUNDED_DRAFTS[case], "n": 1}
                response = await client.post("/api/studio/try", json=body)
        finally:
            done.set()
        assert await health > 0
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["kind"] == "draft_refused"
    [problem] = error["problems"]
    assert (problem["file"], problem["line"]) == (drafts.FILE, drafts.UNBOUNDED_LINE), problem
    assert UNBOUNDED_REASONS[case] in problem["reason"], problem
    assert await mock_admin.requests() == []


async def test_the_studio_calls_the_llm_within_its_budget_and_shows_messages_masked(
    shared_chat_env: dict[str, str], tmp_path: Path, mock_admin: MockAdmin
) -> None:
    # A gateway of its own, for a budget of its own: two tries of two messages, then none.
    own = {"ENRICHER_CHAT_PORT": str(free_port()), "ENRICHER_STUDIO_MAX_CALLS_PER_HOUR": "8"}
    gateway = Gateway(shared_chat_env | own, tmp_path / "chat.log")
    await gateway.start()
    try:
        async with _client(gateway) as client:
            await post_messages(client, ["Where is my order?", "Mail me at ada@example.org please"])
            body = {"template": drafts.FILE, "draft": drafts.DRAFT, "n": 2}
            first, second = [await client.post("/api/studio/try", json=body) for _ in range(2)]
            spent = await client.post("/api/studio/try", json=body | {"n": 1})
    finally:
        gateway.stop()
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    shown = [result["text"] for result in first.json()["results"]]
    assert shown == ["Where is my order?", "Mail me at [EMAIL_1] please"]
    assert "ada@example.org" not in first.text
    assert spent.status_code == 429, spent.text
    assert spent.json()["error"]["kind"] == "studio_budget_spent"
    assert "ENRICHER_STUDIO_MAX_CALLS_PER_HOUR" in spent.json()["error"]["detail"]
    assert len(await mock_admin.requests()) == 8  # none for the refused try
