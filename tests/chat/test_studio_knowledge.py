"""The studio shows the help-center passages the worker would give a message: in a rendered prompt
and beside each message a draft is tried on (a real gateway, broker, Redis and mock LLM; the page in
Debian's chromium)."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Browser

from tests.helpers import studio_drafts as drafts
from tests.helpers.browser import put_profiles
from tests.helpers.credentials import STAFF, STAFF_TOKEN
from tests.helpers.gateway import Gateway, post_messages
from tests.helpers.polling import until

QUESTION = "Can I return an item after 30 days?"
RENDER = {"template": "support_reply.j2", "text": QUESTION, "customer_id": "cust-1"}


async def _indexed(client: httpx.AsyncClient) -> dict[str, Any]:
    """The render of QUESTION once the gateway's help-center is indexed (it builds as it starts)."""
    shown: dict[str, Any] = {}

    async def ready() -> bool:
        shown.update((await client.post("/api/studio/render", json=RENDER)).json())
        return shown["knowledge_problem"] is None

    await until(ready, "the studio's help-center is indexed")
    return shown


async def test_a_rendered_prompt_lists_and_carries_the_passages(
    shared_gateway: Gateway, shared_chat_env: dict[str, str]
) -> None:
    await put_profiles(shared_chat_env["REDIS_URL"])
    async with httpx.AsyncClient(base_url=shared_gateway.url, timeout=30, headers=STAFF) as client:
        shown = await _indexed(client)

    passages = shown["passages"]
    assert passages[0]["id"] == "returns-policy"
    assert passages[0]["title"] == "Our returns policy"
    assert passages[0]["heading"] == "Our returns policy > Returning after 30 days"
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    assert 1 <= len(passages) <= 3
    user = shown["messages"][-1]["content"]
    assert '<article id="returns-policy" title="Our returns policy">' in user
    assert "After the 30-day window we can no longer accept a return" in user


async def test_each_tried_message_shows_its_passages(
    shared_gateway: Gateway, shared_chat_env: dict[str, str]
) -> None:
    await put_profiles(shared_chat_env["REDIS_URL"])
    async with httpx.AsyncClient(base_url=shared_gateway.url, timeout=30, headers=STAFF) as client:
        await _indexed(client)
        await post_messages(client, ["hello", QUESTION])
        body = {"template": drafts.FILE, "draft": drafts.DRAFT, "n": 2}
        response = await client.post("/api/studio/try", json=body)

    assert response.status_code == 200, response.text
    hello, question = response.json()["results"]
    assert hello["passages"] == []
    assert question["passages"][0]["id"] == "returns-policy"
    for side in ("current", "draft"):  # both prompts carried it: the mock answers from it
        assert 'From our help-center ("Our returns policy")' in question[side]["text"], question[side]
        assert "help-center" not in hello[side]["text"]


async def test_the_page_lists_the_passages_under_the_rendered_prompt(
    shared_gateway: Gateway, shared_chat_env: dict[str, str], browser: Browser
) -> None:
    await put_profiles(shared_chat_env["REDIS_URL"])
    async with httpx.AsyncClient(base_url=shared_gateway.url, timeout=30, headers=STAFF) as client:
        await _indexed(client)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{shared_gateway.url}studio?token={STAFF_TOKEN}")
    await page.wait_for_selector("#template option[value='support_reply.j2']", state="attached")
    await page.get_by_label("Template", exact=True).select_option("support_reply.j2")
    await page.get_by_role("textbox", name="Customer message").fill(QUESTION)
    await page.get_by_role("button", name="Render").click()

    first = page.locator("#rendered .passages .passage").first
    await first.wait_for()
    assert (await first.inner_text()).startswith(
        "Our returns policy > Returning after 30 days returns-policy · 0."
    )
