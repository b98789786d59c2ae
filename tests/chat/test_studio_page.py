"""The template studio in a real browser (Debian's chromium, driven by Playwright) on a real
gateway, broker, Redis and the mock LLM: render a template, then try a draft on recent messages.

With `ENRICHER_SCREENSHOTS=docs/images` the desktop screenshot is also `docs/images/studio.png`.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import Browser, Dialog

from tests.helpers import studio_drafts as drafts
from tests.helpers.browser import keep_screenshot, put_profiles
from tests.helpers.credentials import STAFF_TOKEN
from tests.helpers.gateway import Gateway, post_messages

TEXTS = ["Where is my order?", "Can I get a refund?", "My card was declined"]
TRY_TIMEOUT_MS = 30_000


async def test_render_a_template_then_try_a_draft_side_by_side(
    gateway: Gateway, chat_env: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    await put_profiles(chat_env["REDIS_URL"])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        await post_messages(client, TEXTS)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    # The URL `enricher dev` prints, opened once: the session cookie keeps the studio open after.
    await page.goto(f"{gateway.url}studio?token={STAFF_TOKEN}")
    assert page.url == f"{gateway.url}studio", "the token is left in the address bar"
    await page.goto(gateway.url)
    await page.get_by_role("link", name="Template studio").click()  # the chat page links to it
    await page.wait_for_selector("#templates td:text-is('support_reply_gold.j2')")
    assert await page.locator("#problems").inner_text() == "No problems."

    await page.get_by_label("Template", exact=True).select_option(drafts.FILE)
    await page.wait_for_selector("#customer option[value='cust-1']", state="attached")
    await page.get_by_label("Customer", exact=True).select_option("cust-1")
    message = page.get_by_role("textbox", name="Customer message")
    await message.fill("Where is my parcel?")
    await message.press("Tab")
    await page.keyboard.press("Enter")  # on the Render button: the page works from the keyboard
    system = page.locator("#rendered .role-system")
    await system.wait_for()
    assert "- name: Ada Lovelace" in await system.locator("pre").inner_text()
    role, tokens = (await system.locator("h3").inner_text()).split(" · ")
    assert role == "system"
    assert tokens.endswith(" tokens")
    assert int(tokens.split()[0]) > 20, tokens
    total = await page.locator("#rendered .total").inner_text()
    assert total.endswith("prompt tokens in all"), total
    assert "support_reply_gold.j2" in await page.locator("#rendered .note").inner_text()  # Ada is gold

    draft = page.get_by_role("textbox", name="Draft of")
    assert await draft.input_value() == drafts.CURRENT
    await draft.fill(drafts.DRAFT)
    await page.get_by_label("Newest messages on the input topic").fill("3")
    asked: list[str] = []

    async def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await page.get_by_role("button", name="Try draft").click()
    # A locator, not wait_for_function: the page's Content-Security-Policy forbids evaluating strings.
    await page.locator("#tried .trial").nth(2).wait_for(timeout=TRY_TIMEOUT_MS)
    assert asked == ["This calls the configured LLM 3\N{MULTIPLICATION SIGN}2 times (6 calls). Proceed?"]
    trials = page.locator("#tried .trial")
    assert await trials.count() == 3
    for number, text in enumerate(TEXTS):
        trial = trials.nth(number)
        assert text in await trial.locator("h3").inner_text()
        current, changed = await trial.locator(".side .reply").all_inner_texts()
        assert current.startswith("Hi Ada Lovelace,"), current
        assert changed.startswith(f"Hi {drafts.PERSONA},"), changed
        for detail in await trial.locator(".side .detail").all_inner_texts():
            assert " tokens · $0.000" in detail, detail  # the help-center passages count too
    assert "In all for 3 messages" in await page.locator("#tried .total").inner_text()

    await page.screenshot(path=tmp_path / "studio-desktop.png", full_page=True)
    keep_screenshot(tmp_path / "studio-desktop.png", "studio.png")
    await page.set_viewport_size({"width": 320, "height": 640})
    await page.screenshot(path=tmp_path / "studio-320.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 320  # nothing cut off at the side
