"""The chat page in a real browser (Debian's chromium, driven by Playwright) against a real stack:
broker, Redis, the mock LLM, a worker and the gateway.

With `ENRICHER_SCREENSHOTS=docs/images` the desktop screenshot is also `docs/images/chat.png`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, expect

from devstack.mock_llm.admin import MockAdmin
from tests.helpers.browser import keep_screenshot, put_profiles
from tests.helpers.gateway import Gateway
from tests.helpers.kafka import produce
from tests.helpers.timeouts import SEVERAL_PROCESSES
from tests.helpers.workers import Worker, WorkerFactory

# Every test starts the gateway and opens a page in the session's chromium (launching it, if it
# is its process's first), and all but one start a worker too.
pytestmark = SEVERAL_PROCESSES

# The mock streams a reply in 6 pieces over half its latency: 2.4 s makes chunks 200 ms apart,
# more than the worker's 50 ms batching, so the page gets several.
STREAMING_LATENCY_MS = 2400
# Below the test's timeout, so a wait that fails says which one it was.
PAGE_TIMEOUT_MS = 15_000
REPLY_TIMEOUT_MS = 20_000
# Every state the reply bubbles go through, as the page shows them.
RECORD_STATES = """() => {
  window.seen = [];
  const record = () => document.querySelectorAll(".agent").forEach((node) =>
    window.seen.push([node.dataset.state, node.querySelector(".text")?.textContent ?? ""]));
  new MutationObserver(record).observe(document.getElementById("log"),
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""


@pytest.fixture
async def stack(
    shared_gateway: Gateway,
    shared_chat_worker: Worker,
    mock_admin: MockAdmin,
    shared_chat_env: dict[str, str],
) -> Gateway:
    """The module's gateway in front of its ready worker, demo profiles in Redis, replies
    streaming slowly. Each page opened starts a conversation of its own."""
    await put_profiles(shared_chat_env["REDIS_URL"])
    await mock_admin.config(latency_ms=STREAMING_LATENCY_MS)
    return shared_gateway


@pytest.fixture
async def own_stack(
    gateway: Gateway, worker_factory: WorkerFactory, mock_admin: MockAdmin, chat_env: dict[str, str]
) -> Gateway:
    """`stack` on a gateway and a worker of this test's own, for a test that stops the gateway."""
    await put_profiles(chat_env["REDIS_URL"])
    await mock_admin.config(latency_ms=STREAMING_LATENCY_MS)
    await worker_factory()
    return gateway


async def _new_page(browser: Browser) -> Page:
    page = await browser.new_page(viewport={"width": 1000, "height": 720})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return page


async def _open(browser: Browser, gateway: Gateway, customer_id: str) -> Page:
    page = await _new_page(browser)
    await page.goto(gateway.url)
    # The page opens a conversation for the first customer as it loads. Picking another starts a
    # new one, which must be the one online: a message sent in the first would be cleared away
    # with it when the second starts.
    await page.wait_for_selector("#status[data-state='online']")
    first = await page.locator("#conversation-id").inner_text()
    await page.select_option("#customer", customer_id)
    await expect(page.locator("#conversation-id")).not_to_have_text(first, timeout=PAGE_TIMEOUT_MS)
    await page.wait_for_selector("#status[data-state='online']")
    return page


async def _final_replies(page: Page, count: int) -> list[str]:
    # A locator, not wait_for_function: the page's Content-Security-Policy forbids evaluating strings.
    await page.locator(".agent[data-state='final']").nth(count - 1).wait_for(timeout=REPLY_TIMEOUT_MS)
    return await page.locator(".agent[data-state='final'] .text").all_inner_texts()


async def test_a_reply_streams_in_and_settles_with_its_details(
    stack: Gateway, browser: Browser, tmp_path: Path
) -> None:
    page = await _open(browser, stack, "cust-1")
    await page.evaluate(RECORD_STATES)
    composer = page.get_by_role("textbox", name="Message")
    await composer.press_sequentially("Where is")
    await composer.press("Shift+Enter")  # a new line, not sent
    await composer.press_sequentially("my order?")
    assert await composer.input_value() == "Where is\nmy order?"
    await composer.press("Enter")

    [final] = await _final_replies(page, 1)
    assert final.startswith("Hi Ada Lovelace,"), final
    assert await composer.input_value() == ""
    assert await page.locator(".customer .text").all_inner_texts() == ["Where is\nmy order?"]
    seen: list[list[str]] = await page.evaluate("window.seen")
    streamed = {text for state, text in seen if state == "streaming"}
    partial = [text for text in streamed if text and text != final]
    assert partial, f"no text was shown before the reply settled: {seen}"
    assert all(final.startswith(text) for text in streamed), seen
    detail = await page.locator(".agent[data-state='final'] .detail").inner_text()
    for part in ("gpt-4o-mini", "support_reply", " ms", "tokens", "$"):
        assert part in detail, detail
    assert await page.locator(".agent .badge").count() == 0  # neither fallback nor handoff

    await page.screenshot(path=tmp_path / "chat-desktop.png")
    keep_screenshot(tmp_path / "chat-desktop.png", "chat.png")
    await page.set_viewport_size({"width": 320, "height": 640})
    await page.screenshot(path=tmp_path / "chat-320.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 320  # nothing cut off at the side


async def test_the_page_reconnects_after_the_gateway_restarts(
    own_stack: Gateway, browser: Browser, tmp_path: Path
) -> None:
    page = await _open(browser, own_stack, "cust-2")
    composer = page.get_by_role("textbox", name="Message")
    await composer.fill("Is anyone there?")
    await composer.press("Enter")
    await page.wait_for_selector(".customer .note:text('sent')")

    own_stack.stop()  # while the reply is still being made
    await page.wait_for_selector("#status[data-state='offline']")
    await page.screenshot(path=tmp_path / "offline.png")
    await own_stack.start()
    await page.wait_for_selector("#status[data-state='online']")

    # The reply made while the page was offline shows, and the new stream carries the next one.
    [first] = await _final_replies(page, 1)
    assert first.startswith("Hi Grace Hopper,"), first
    await composer.fill("Still there?")
    await composer.press("Enter")
    replies = await _final_replies(page, 2)
    assert [reply.startswith("Hi Grace Hopper,") for reply in replies] == [True, True], replies
    assert "Still there?" in replies[1]
    await page.screenshot(path=tmp_path / "reconnected.png")


async def test_the_customer_picked_last_is_played_when_an_earlier_login_answers_late(
    stack: Gateway, browser: Browser
) -> None:
    page = await _new_page(browser)
    held: asyncio.Future[Route] = asyncio.get_running_loop().create_future()

    async def hold_the_first_login(route: Route) -> None:
        if not held.done():
            held.set_result(route)  # answered after the later pick's
        else:
            await route.fulfill(response=await route.fetch())

    await page.route("**/api/dev/login", hold_the_first_login)
    await page.goto(stack.url)
    first_login = await held  # the page's own, for the first customer
    await page.select_option("#customer", "cust-2")
    await page.wait_for_selector("#status[data-state='online']")
    await first_login.fulfill(response=await first_login.fetch())

    composer = page.get_by_role("textbox", name="Message")
    await composer.fill("Who am I?")
    await composer.press("Enter")
    [reply] = await _final_replies(page, 1)
    assert reply.startswith("Hi Grace Hopper,"), reply


def _reply_record(conversation_id: str, message_ids: list[str], status: str) -> bytes:
    """A reply as the contract shapes it, answering `message_ids` (the last is its own)."""
    document = {
        "reply_id": f"r-{message_ids[-1]}",
        "message_id": message_ids[-1],
        "conversation_id": conversation_id,
        "customer_id": "cust-2",
        "text": "A colleague will take over this conversation.",
        "status": status,
        "model": "gpt-4o-mini",
        "prompt": {"name": "handoff", "version": "0123456789ab", "variant": None},
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": None},
        "latency_ms": 12,
        "created_at": "2026-12-02T08:00:00.000Z",
        "answers": message_ids,
    }
    return json.dumps(document).encode()


async def test_fallback_handoff_and_coalesced_replies_are_marked(
    gateway: Gateway, browser: Browser, chat_env: dict[str, str], kafka: str, mock_admin: MockAdmin
) -> None:
    # No worker: the test writes the replies a worker would, in the contract's shape.
    await put_profiles(chat_env["REDIS_URL"])
    page = await _open(browser, gateway, "cust-2")
    composer = page.get_by_role("textbox", name="Message")
    sent = []
    for text in ("I want a person", "A real one, please"):
        async with page.expect_response("**/api/messages") as posted:
            await composer.fill(text)
            await composer.press("Enter")
        sent.append(await (await posted.value).json())
    conversation_id, ids = sent[0]["conversation_id"], [answer["message_id"] for answer in sent]
    reply_topic = chat_env["ENRICHER_REPLY_TOPIC"]
    await produce(kafka, reply_topic, conversation_id, _reply_record(conversation_id, ids, "handoff"))

    [final] = await _final_replies(page, 1)
    assert final == "A colleague will take over this conversation."
    assert await page.locator(".agent .badge").all_text_contents() == ["Handed to a human"]
    assert await page.locator(".agent .answers").inner_text() == "Answers your 2 messages together"
    notes = await page.locator(".customer .note").all_inner_texts()
    assert notes == ["answered together (1/2)", "answered together (2/2)"]

    async with page.expect_response("**/api/messages") as posted:
        await composer.fill("Hello?")
        await composer.press("Enter")
    third = (await (await posted.value).json())["message_id"]
    await produce(kafka, reply_topic, conversation_id, _reply_record(conversation_id, [third], "fallback"))
    await _final_replies(page, 2)
    assert await page.locator(".agent .badge").all_text_contents() == ["Handed to a human", "Fallback reply"]


async def test_a_reply_from_the_help_center_shows_its_sources(stack: Gateway, browser: Browser) -> None:
    page = await _open(browser, stack, "cust-1")
    composer = page.get_by_role("textbox", name="Message")
    await composer.fill("Can I return an item after 30 days?")
    await composer.press("Enter")

    [final] = await _final_replies(page, 1)
    assert 'From our help-center ("Our returns policy"): After the 30-day window' in final, final
    sources = await page.locator(".agent[data-state='final'] .sources .source").all_inner_texts()
    assert sources[0] == "Our returns policy", sources
    assert await page.locator(".agent[data-state='final'] .sources-title").inner_text() == "Sources"
