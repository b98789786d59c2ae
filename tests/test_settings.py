"""Settings: defaults from the contract, one-line errors naming the variable, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import aiokafka.codec
import pytest

from app.settings import Settings, SettingsError, load_settings

MOCK_URL = "http://127.0.0.1:9/v1"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in list(Settings.model_fields):
        alias = Settings.model_fields[name].validation_alias
        for choice in getattr(alias, "choices", ()):
            monkeypatch.delenv(str(choice), raising=False)
    monkeypatch.chdir(str(tmp_path))


def test_contract_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key-123456")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.redis_url.get_secret_value() == "redis://localhost:6379/0"
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert settings.model == "gpt-4o-mini"
    assert settings.fallback_models == ()
    assert settings.app_id == "stream-enricher"
    assert (settings.input_topic, settings.reply_topic) == ("support.requests", "support.replies")
    assert (settings.stream_topic, settings.dlq_topic) == ("support.replies.stream", "support.requests.dlq")
    assert settings.profile_topic == "customer.profiles"
    assert (settings.max_in_flight, settings.llm_timeout_s, settings.llm_deadline_s) == (64, 30, 120)
    assert (settings.llm_rpm, settings.llm_tpm) == (None, None)
    assert (settings.max_input_chars, settings.max_prompt_tokens) == (8000, 6000)
    assert (settings.history_turns, settings.history_ttl_s) == (20, 86400)
    assert (settings.web_port, settings.shutdown_grace_s) == (6066, 30)


def test_producer_compression_is_zstd_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", MOCK_URL)
    assert load_settings().producer_compression == "zstd"
    monkeypatch.setenv("ENRICHER_PRODUCER_COMPRESSION", "lz4")
    assert load_settings().producer_compression == "lz4"


def test_a_codec_whose_library_is_missing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiokafka.codec, "has_zstd", lambda: False)
    monkeypatch.setenv("OPENAI_BASE_URL", MOCK_URL)
    monkeypatch.setenv("ENRICHER_PRODUCER_COMPRESSION", "zstd")
    with pytest.raises(
        SettingsError, match=r"^ENRICHER_PRODUCER_COMPRESSION: the zstd codec is not installed"
    ):
        load_settings()


def test_fallback_models_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", MOCK_URL)
    monkeypatch.setenv("ENRICHER_FALLBACK_MODELS", "gpt-4o, mock-small ,")
    assert load_settings().fallback_models == ("gpt-4o", "mock-small")


def test_key_not_needed_for_loopback_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", MOCK_URL)
    assert load_settings().openai_api_key is None


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from pathlib import Path

    Path(str(tmp_path), ".env").write_text(f"OPENAI_BASE_URL={MOCK_URL}\nENRICHER_MODEL=mock-small\n")
    assert load_settings().model == "mock-small"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "OPENAI_API_KEY"),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_MAX_IN_FLIGHT": "many"}, "ENRICHER_MAX_IN_FLIGHT"),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_MAX_IN_FLIGHT": "0"}, "ENRICHER_MAX_IN_FLIGHT"),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_WEB_PORT": "70000"}, "ENRICHER_WEB_PORT"),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_LLM_TIMEOUT_S": "-1"}, "ENRICHER_LLM_TIMEOUT_S"),
        ({"OPENAI_BASE_URL": "not a url"}, "OPENAI_BASE_URL"),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_LLM_RPM": "lots"}, "ENRICHER_LLM_RPM"),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_APP_ID": ""}, "ENRICHER_APP_ID"),
        (
            {"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_PRODUCER_COMPRESSION": "brotli"},
            "ENRICHER_PRODUCER_COMPRESSION",
        ),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_secret_values_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", MOCK_URL)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-secret@")
    monkeypatch.setenv("ENRICHER_WEB_PORT", "x")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


def test_worker_exits_2_with_one_line(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": MOCK_URL, "ENRICHER_HISTORY_TURNS": "-3"}
    result = subprocess.run(
        [sys.executable, "-m", "app.main", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ENRICHER_HISTORY_TURNS" in lines[0]
