"""ENRICHER_LLM_HEADERS: extra HTTP headers on every LLM request, kept secret like a key."""

from __future__ import annotations

import logging

import pytest

from app.llm.client import CallOptions, LLMClient, openai_client
from app.observability.logs import JsonFormatter, Redactor, secrets_of
from app.settings import Settings, SettingsError, load_settings
from app.tokens import ChatMessage
from devstack.mock_llm.admin import MockAdmin

GATEWAY_KEY = "gw-7f3a9c1e2b"
HEADERS = f'{{"X-Gateway-Key": "{GATEWAY_KEY}", "X-Team": "support"}}'
MESSAGES: list[ChatMessage] = [{"role": "user", "content": "Where is my order?"}]


def _load(monkeypatch: pytest.MonkeyPatch, headers: str) -> Settings:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ENRICHER_LLM_HEADERS", headers)
    return load_settings()


async def test_every_request_carries_the_headers(monkeypatch: pytest.MonkeyPatch, mock_url: str) -> None:
    monkeypatch.setenv("ENRICHER_LLM_HEADERS", HEADERS)
    settings = Settings.model_validate({"OPENAI_BASE_URL": mock_url})
    llm = LLMClient(settings, openai_client(settings))
    async with MockAdmin(mock_url) as admin:
        await admin.reset()
        try:
            await llm.complete(MESSAGES, CallOptions())
        finally:
            await llm.aclose()
        (request,) = await admin.requests()
    assert request["headers"]["x-gateway-key"] == GATEWAY_KEY
    assert request["headers"]["x-team"] == "support"
    assert request["headers"]["authorization"] == "Bearer mock-key"  # the key still goes as before


def test_unset_means_no_extra_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENRICHER_LLM_HEADERS", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert load_settings().llm_header_values == {}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (f'{{"X-Gateway-Key": "{GATEWAY_KEY}"', "JSON"),
        (f'["X-Gateway-Key", "{GATEWAY_KEY}"]', "dictionary"),
        (f'{{"X Gateway": "{GATEWAY_KEY}"}}', "not an HTTP header name"),
        (f'{{"X-Gateway-Key": "{GATEWAY_KEY}\\r\\nHost: evil"}}', "line break"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable_and_never_its_value(
    monkeypatch: pytest.MonkeyPatch, headers: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        _load(monkeypatch, headers)
    message = str(caught.value)
    assert message.startswith("ENRICHER_LLM_HEADERS: ")
    assert reason in message
    assert "\n" not in message
    assert GATEWAY_KEY not in message


def test_the_values_are_redacted_from_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _load(monkeypatch, HEADERS)
    assert GATEWAY_KEY not in repr(settings)
    formatter = JsonFormatter(Redactor(secrets_of(settings)))
    record = logging.LogRecord("llm", logging.INFO, __file__, 1, f"sent {GATEWAY_KEY}", None, None)
    assert GATEWAY_KEY not in formatter.format(record)
