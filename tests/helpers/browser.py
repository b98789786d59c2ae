"""What the browser tests of the gateway's pages share: chromium's flags, demo profiles, keeping a screenshot.

`ENRICHER_SCREENSHOTS=docs/images` also copies a test's chosen screenshot to that directory (the
images of docs/chat-frontend.md and docs/support-team.md); without it, screenshots stay in the
test's temporary directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import redis.asyncio as aioredis

from tests.helpers.workers import REPO

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PROFILES = {
    "cust-1": {"name": "Ada Lovelace", "tier": "gold", "plan": "Pro"},
    "cust-2": {"name": "Grace Hopper", "tier": "silver", "plan": "Team"},
}


async def put_profiles(redis_url: str) -> None:
    """Write PROFILES where the worker and the gateway read them."""
    async with aioredis.from_url(redis_url, socket_timeout=5.0) as redis:
        for customer_id, profile in PROFILES.items():
            await redis.hset(f"customer:{customer_id}", mapping=profile)


def keep_screenshot(path: Path, name: str) -> None:
    """Copy a screenshot to ENRICHER_SCREENSHOTS (relative to the repository) as `name`, when set."""
    if target := os.environ.get("ENRICHER_SCREENSHOTS"):
        directory = REPO / target
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, directory / name)
