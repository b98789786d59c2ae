"""Settings: defaults from the contract, one-line errors naming the variable, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import aiokafka.codec
import pytest

from app.settings import Settings, SettingsError, load_settings
from tests.helpers.tls import Pki

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
    assert settings.redis_cluster == "off"
    assert settings.tool_max_steps == 3


def test_producer_compression_is_none_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", MOCK_URL)
    assert load_settings().producer_compression == "none"
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
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_TOOL_MAX_STEPS": "-1"}, "ENRICHER_TOOL_MAX_STEPS"),
        (
            {"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_STUDIO_MAX_CALLS_PER_HOUR": "0"},
            "ENRICHER_STUDIO_MAX_CALLS_PER_HOUR",
        ),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_APP_ID": ""}, "ENRICHER_APP_ID"),
        (
            {"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_PRODUCER_COMPRESSION": "brotli"},
            "ENRICHER_PRODUCER_COMPRESSION",
        ),
        ({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_REDIS_CLUSTER": "maybe"}, "ENRICHER_REDIS_CLUSTER"),
        (
            {"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_REDIS_CLUSTER": "on", "REDIS_URL": "redis://h:6379/2"},
            "REDIS_URL",
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


def run_worker(env: dict[str, str], cwd: object) -> subprocess.CompletedProcess[str]:
    """`enricher worker` with only `env` (and PATH), in a directory without a .env file."""
    return subprocess.run(
        [sys.executable, "-m", "app.main", "worker"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(cwd),
        check=False,
    )


def test_worker_exits_2_with_one_line(tmp_path: object) -> None:
    result = run_worker({"OPENAI_BASE_URL": MOCK_URL, "ENRICHER_HISTORY_TURNS": "-3"}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "ENRICHER_HISTORY_TURNS" in lines[0]


PASSWORD = "pw-hunter2-never-shown"
SASL_SSL = {
    "OPENAI_BASE_URL": MOCK_URL,
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_USERNAME": "svc-enricher",
    "KAFKA_SASL_PASSWORD": PASSWORD,
}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SASL_USERNAME": None}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_USERNAME": ""}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_PASSWORD": None}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": None}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_MECHANISM": ""}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "KAFKA_SASL_USERNAME"),  # credentials it would not use
        ({"KAFKA_SECURITY_PROTOCOL": "SSL"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CAFILE": "{ca}"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SSL_CAFILE": "{missing}"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SSL_CERTFILE": "{missing}", "KAFKA_SSL_KEYFILE": "{client_key}"}, "KAFKA_SSL_CERTFILE"),
        ({"KAFKA_SSL_CERTFILE": "{client_cert}", "KAFKA_SSL_KEYFILE": "{missing}"}, "KAFKA_SSL_KEYFILE"),
        ({"KAFKA_SSL_CERTFILE": "{client_cert}"}, "KAFKA_SSL_KEYFILE"),
        ({"KAFKA_SSL_KEYFILE": "{client_key}"}, "KAFKA_SSL_CERTFILE"),
        ({"KAFKA_SSL_CAFILE": "{client_key}"}, "KAFKA_SSL_CAFILE"),  # not a certificate
        ({"KAFKA_SSL_CERTFILE": "{client_cert}", "KAFKA_SSL_KEYFILE": "{server_key}"}, "KAFKA_SSL_CERTFILE"),
        ({"KAFKA_SSL_CERTFILE": "{client_cert}", "KAFKA_SSL_KEYFILE": "{encrypted}"}, "KAFKA_SSL_CERTFILE"),
    ],
)
def test_bad_kafka_security_names_the_variable_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, env: dict[str, str | None], variable: str
) -> None:
    files = {
        "ca": pki.ca,
        "missing": pki.ca.parent / "no-such.pem",
        "client_cert": pki.client_cert,
        "client_key": pki.client_key,
        "server_key": pki.server_key,
        "encrypted": pki.client_key_encrypted,
    }
    for name, value in (SASL_SSL | env).items():
        if value is not None:
            monkeypatch.setenv(name, value.format(**files))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message
    assert PASSWORD not in message


def test_an_encrypted_key_is_refused_without_asking_for_its_password(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    for name, value in SASL_SSL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_SSL_CERTFILE", str(pki.client_cert))
    monkeypatch.setenv("KAFKA_SSL_KEYFILE", str(pki.client_key_encrypted))
    with pytest.raises(SettingsError, match=r"^KAFKA_SSL_CERTFILE: .*the key is encrypted"):
        load_settings()


def test_kafka_security_defaults_to_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", MOCK_URL)
    settings = load_settings()
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("PLAINTEXT", "PLAIN")
    assert (settings.kafka_sasl_username, settings.kafka_sasl_password) == (None, None)
    assert (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) == (None,) * 3


def test_sasl_ssl_with_mutual_tls_loads_and_keeps_the_password_secret(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    env = SASL_SSL | {
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SSL_CAFILE": str(pki.ca),
        "KAFKA_SSL_CERTFILE": str(pki.client_cert),
        "KAFKA_SSL_KEYFILE": str(pki.client_key),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD
    assert (settings.kafka_ssl_cafile, settings.kafka_ssl_keyfile) == (pki.ca, pki.client_key)
    assert PASSWORD not in repr(settings)


def test_worker_exits_2_without_showing_the_kafka_password(tmp_path: object) -> None:
    result = run_worker({**SASL_SSL, "KAFKA_SASL_USERNAME": ""}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "enricher: configuration error: KAFKA_SASL_USERNAME: String should have at least 1 character (got '')"
    ]
    assert PASSWORD not in result.stdout + result.stderr
