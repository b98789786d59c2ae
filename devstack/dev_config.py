"""What `enricher dev` runs with and leaves behind: its settings, in which the built-in mock LLM
stands in while no key is given, and its state file, by which `enricher send` finds it."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from app.kafka.topics import TopicNames
from app.settings import Settings, load_settings

STATE_DIR = Path(".enricher-dev")
STATE_PATH = STATE_DIR / "state.json"


class DevState(BaseModel):
    """What `.enricher-dev/state.json` records, so `enricher send` finds a running dev stack."""

    pid: int = Field(description="the `enricher dev` process")
    started_at: str
    kafka_bootstrap_servers: str
    redis_url: str
    llm_base_url: str
    web_port: int
    topics: TopicNames
    pids: dict[str, int]
    embedded: list[str] = Field(description="what dev started itself: broker, redis, mock_llm")
    logs_dir: str

    @classmethod
    def load(cls, path: Path = STATE_PATH) -> DevState | None:
        """The recorded state, or None when there is none or its `enricher dev` is gone."""
        try:
            state = cls.model_validate_json(path.read_bytes())
            os.kill(state.pid, 0)
        except (OSError, ValidationError):
            return None
        return state

    def save(self, path: Path = STATE_PATH) -> None:
        """Write the state file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


class _MockDefaultSettings(Settings):
    """Settings whose LLM URL defaults to loopback: with no key, the built-in mock stands in."""

    openai_base_url: str = Field("http://127.0.0.1/v1", validation_alias="OPENAI_BASE_URL")


def needs_mock(settings: Settings) -> bool:
    """True when neither OPENAI_API_KEY nor OPENAI_BASE_URL was given: the mock LLM is the LLM."""
    return settings.openai_api_key is None and "openai_base_url" not in settings.model_fields_set


def load_dev_settings() -> Settings:
    """The environment's settings, except that no OPENAI_API_KEY and no OPENAI_BASE_URL is allowed.

    Then `needs_mock()` is true and the URL is a placeholder until the mock runs.
    Raises SettingsError like `load_settings()`.
    """
    try:
        probe = _MockDefaultSettings()
    except ValidationError:
        return load_settings()  # fails the same way, naming the variable
    return probe if needs_mock(probe) else load_settings()


def redacted_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***` (for the state file and the banner)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
