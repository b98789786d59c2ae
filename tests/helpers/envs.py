"""The environments tests run the service in: their own app id, topics and Redis database, for one
test (the fixtures in tests/conftest.py) or for a whole module (a gateway its tests share)."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis

from app.kafka.topics import TopicNames
from app.settings import Settings
from devstack.broker import create_topics
from tests.helpers.workers import REPO

LoadSettings = Callable[[Mapping[str, str]], Settings]
"""The `settings_from` fixture (tests/deploy/conftest.py): the worker's settings from exactly the
variables given."""

# Databases 1-15 in turn (0 is left to the tests that take `redis_url` as it is): an environment
# keeps its database while fewer than 15 others are made after it.
_redis_databases = itertools.cycle(range(1, 16))


async def service_env_for(name: str, redis_url: str, mock_llm: str) -> dict[str, str]:
    """Settings without a broker for `name` (a test's or module's): its own app id and topic
    names, an emptied Redis database."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40]
    app_id = f"t-{slug}-{uuid.uuid4().hex[:6]}"
    env = {
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + f"/{next(_redis_databases)}",
        "OPENAI_BASE_URL": mock_llm,
        "ENRICHER_APP_ID": app_id,
        **TopicNames.prefixed(app_id).env(),
        "ENRICHER_PROMPTS_DIR": str(REPO / "prompts"),
        "ENRICHER_KNOWLEDGE_DIR": str(REPO / "knowledge"),
        "ENRICHER_SHUTDOWN_GRACE_S": "10",
        # The embedded broker lets a new group's members join for half the session timeout before
        # it assigns partitions: 3 s at the default 6 s, 1.5 s here, on each worker's start.
        "ENRICHER_SESSION_TIMEOUT_S": "3",
    }
    async with aioredis.from_url(env["REDIS_URL"], socket_timeout=5.0) as client:
        await client.flushdb()
    return env


async def on_broker(env: dict[str, str], kafka: str) -> dict[str, str]:
    """`env` on the broker at `kafka`, with its topics created."""
    env = env | {"KAFKA_BOOTSTRAP_SERVERS": kafka}
    settings = Settings.model_validate(env)
    await create_topics(kafka, TopicNames.of(settings).partitions(settings.input_partitions))
    return env
