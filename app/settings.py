"""The worker's configuration: every variable of docs/CONTRACT.md, read once at the entry point."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import ssl
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import aiokafka.codec
import yaml
from aiokafka.helpers import create_ssl_context
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
LOOPBACK_HOSTS = frozenset({"localhost"})
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
# A variable so named never has its value shown.
SECRET_MARKERS = ("KEY", "SECRET", "URL", "PASSWORD", "HEADERS")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MIN_JWT_SECRET_CHARS = 32  # HS256 wants a key at least as long as its hash (RFC 7518, 3.2)


def studio_token_digest(token: str) -> str:
    """What the staff tokens file keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def studio_token_line(name: str, token: str) -> str:
    """The staff tokens file's line for `name`'s `token`."""
    return f"{name}:{studio_token_digest(token)}\n"


def read_studio_tokens(path: Path) -> dict[str, str]:
    """The staff tokens file (`name:sha256hex` a line; blank lines and `#` comments skipped) as
    the staff's names by their tokens' SHA-256; ValueError naming the line when one is malformed."""
    names: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, digest = line.strip().rpartition(":")
        digest = digest.lower()
        if not name or not SHA256_HEX.fullmatch(digest):
            raise ValueError(f"line {number} of {path.name}: expected name:sha256hex")
        names[digest] = name
    return names


class Price(BaseModel):
    """One model's price in ENRICHER_PRICES_FILE, USD per million tokens (`app.prices` uses it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    """None: the provider bills cached input as input."""
    output: float = Field(ge=0)


_PRICES = TypeAdapter(dict[str, Price])


def read_prices(path: Path) -> dict[str, Price]:
    """The prices file (a YAML mapping of model name to prices) as prices by model; ValueError
    naming the file and the entry when it is malformed."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a mapping of model name to prices")
    try:
        return _PRICES.validate_python({str(model): price for model, price in document.items()})
    except ValidationError as error:
        where, message = _first_problem(error)
        raise ValueError(f"{path}: {'.'.join(str(part) for part in where)}: {message}") from None


def _no_key_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password.
    raise ValueError("the key is encrypted; KAFKA_SSL_KEYFILE must hold an unencrypted key")


def tls_context(cafile: Path | None, certfile: Path | None, keyfile: Path | None) -> ssl.SSLContext:
    """A Kafka client's TLS context verifying the broker against `cafile` (None: the system's CAs),
    with the client certificate and key when given; here, so that the KAFKA_SSL_* files are loaded
    at start exactly as the clients load them. Raises ssl.SSLError, OSError or ValueError."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=cafile, certfile=certfile, keyfile=keyfile, password=_no_key_password
    )
    return context


def _env(name: str) -> AliasChoices:
    """Bind a field to exactly one environment variable name."""
    return AliasChoices(name)


def is_loopback_url(url: str) -> bool:
    """True when the URL points at this machine (where the built-in mock LLM serves)."""
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Environment configuration of one worker; immutable once built."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=False,
    )

    kafka_bootstrap_servers: str = Field(
        "localhost:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS"), min_length=1
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", validation_alias=_env("KAFKA_SASL_MECHANISM")
    )
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"), min_length=1)
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias=_env("KAFKA_SASL_PASSWORD"))
    kafka_ssl_cafile: FilePath | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE"))
    kafka_ssl_certfile: FilePath | None = Field(None, validation_alias=_env("KAFKA_SSL_CERTFILE"))
    kafka_ssl_keyfile: FilePath | None = Field(None, validation_alias=_env("KAFKA_SSL_KEYFILE"))
    redis_url: SecretStr = Field(SecretStr("redis://localhost:6379/0"), validation_alias=_env("REDIS_URL"))
    redis_cluster: Literal["off", "on"] = Field("off", validation_alias=_env("ENRICHER_REDIS_CLUSTER"))
    openai_base_url: str = Field(OPENAI_DEFAULT_BASE_URL, validation_alias=_env("OPENAI_BASE_URL"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    # Values may carry a gateway's credentials: kept as secrets, never shown or logged.
    llm_headers: Annotated[dict[str, SecretStr], NoDecode] = Field(
        {}, validation_alias=_env("ENRICHER_LLM_HEADERS")
    )
    model: str = Field("gpt-4o-mini", validation_alias=_env("ENRICHER_MODEL"), min_length=1)
    fallback_models: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("ENRICHER_FALLBACK_MODELS")
    )
    app_id: str = Field("stream-enricher", validation_alias=_env("ENRICHER_APP_ID"), min_length=1)
    group_instance_id: str | None = Field(
        None, validation_alias=_env("ENRICHER_GROUP_INSTANCE_ID"), min_length=1, max_length=249
    )
    session_timeout_s: float = Field(6.0, validation_alias=_env("ENRICHER_SESSION_TIMEOUT_S"), ge=1, le=90)
    input_topic: str = Field("support.requests", validation_alias=_env("ENRICHER_INPUT_TOPIC"), min_length=1)
    reply_topic: str = Field("support.replies", validation_alias=_env("ENRICHER_REPLY_TOPIC"), min_length=1)
    stream_topic: str = Field(
        "support.replies.stream", validation_alias=_env("ENRICHER_STREAM_TOPIC"), min_length=1
    )
    dlq_topic: str = Field("support.requests.dlq", validation_alias=_env("ENRICHER_DLQ_TOPIC"), min_length=1)
    profile_topic: str = Field(
        "customer.profiles", validation_alias=_env("ENRICHER_PROFILE_TOPIC"), min_length=1
    )
    handoff_topic: str = Field(
        "support.handoffs", validation_alias=_env("ENRICHER_HANDOFF_TOPIC"), min_length=1
    )
    control_topic: str = Field(
        "support.control", validation_alias=_env("ENRICHER_CONTROL_TOPIC"), min_length=1
    )
    orders_topic: str = Field("customer.orders", validation_alias=_env("ENRICHER_ORDERS_TOPIC"), min_length=1)
    # A customer's orders are forgotten this long after their latest order record.
    orders_ttl_s: int = Field(90 * 86400, validation_alias=_env("ENRICHER_ORDERS_TTL_S"), ge=1)
    prompts_dir: Path = Field(Path("./prompts"), validation_alias=_env("ENRICHER_PROMPTS_DIR"))
    # The help-center's articles (app/knowledge): checked at start and on each edit, like templates.
    knowledge_dir: Path = Field(Path("./knowledge"), validation_alias=_env("ENRICHER_KNOWLEDGE_DIR"))
    prices_file: Path | None = Field(None, validation_alias=_env("ENRICHER_PRICES_FILE"))
    max_in_flight: int = Field(64, validation_alias=_env("ENRICHER_MAX_IN_FLIGHT"), ge=1, le=10_000)
    max_buffered: int = Field(1024, validation_alias=_env("ENRICHER_MAX_BUFFERED"), ge=1)
    llm_timeout_s: float = Field(30.0, validation_alias=_env("ENRICHER_LLM_TIMEOUT_S"), gt=0)
    llm_deadline_s: float = Field(120.0, validation_alias=_env("ENRICHER_LLM_DEADLINE_S"), gt=0)
    llm_adaptive: Literal["on", "off"] = Field("on", validation_alias=_env("ENRICHER_LLM_ADAPTIVE"))
    llm_first_token_timeout_s: float | None = Field(
        None, validation_alias=_env("ENRICHER_LLM_FIRST_TOKEN_TIMEOUT_S"), gt=0
    )
    llm_rpm: int | None = Field(None, validation_alias=_env("ENRICHER_LLM_RPM"), ge=1)
    llm_tpm: int | None = Field(None, validation_alias=_env("ENRICHER_LLM_TPM"), ge=1)
    # Rounds of tool calls per reply (app/llm/tool_loop.py), each an LLM call of its own; then one
    # more call that may not call tools gives the answer. 0: the LLM is offered no tools.
    tool_max_steps: int = Field(3, validation_alias=_env("ENRICHER_TOOL_MAX_STEPS"), ge=0, le=10)
    # The template studio's draft tries (two LLM calls a message), on top of the RPM and TPM caps.
    studio_max_calls_per_hour: int = Field(
        60, validation_alias=_env("ENRICHER_STUDIO_MAX_CALLS_PER_HOUR"), ge=1
    )
    max_input_chars: int = Field(8000, validation_alias=_env("ENRICHER_MAX_INPUT_CHARS"), ge=1)
    max_prompt_tokens: int = Field(6000, validation_alias=_env("ENRICHER_MAX_PROMPT_TOKENS"), ge=100)
    history_turns: int = Field(20, validation_alias=_env("ENRICHER_HISTORY_TURNS"), ge=0)
    history_ttl_s: int = Field(86400, validation_alias=_env("ENRICHER_HISTORY_TTL_S"), ge=1)
    web_port: int = Field(6066, validation_alias=_env("ENRICHER_WEB_PORT"), ge=1, le=65535)
    # The models embedded in the worker (app/signals); off: no signals, no models loaded (personal
    # data is masked all the same: rules, not models).
    signals: Literal["on", "off"] = Field("on", validation_alias=_env("ENRICHER_SIGNALS"))
    # Personal data in the customer's text and history becomes placeholders before the prompt
    # leaves for the LLM, and the originals are put back into the reply (promise 7).
    pii_masking: Literal["on", "off"] = Field("on", validation_alias=_env("ENRICHER_PII_MASKING"))
    # queued: the messages of a conversation that queued behind its reply being made are
    # answered together by the next reply; off: one reply per message.
    coalesce: Literal["queued", "off"] = Field("queued", validation_alias=_env("ENRICHER_COALESCE"))
    chat_port: int = Field(8080, validation_alias=_env("ENRICHER_CHAT_PORT"), ge=1, le=65535)
    # Who may use the gateway's pages: docs/CONTRACT.md, "Who may use the pages".
    studio_tokens_file: FilePath | None = Field(None, validation_alias=_env("ENRICHER_STUDIO_TOKENS_FILE"))
    auth_proxy_header: str | None = Field(None, validation_alias=_env("ENRICHER_AUTH_PROXY_HEADER"))
    trusted_proxies: Annotated[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode] = Field(
        (), validation_alias=_env("ENRICHER_TRUSTED_PROXIES")
    )
    chat_jwt_secret: SecretStr | None = Field(None, validation_alias=_env("ENRICHER_CHAT_JWT_SECRET"))
    chat_jwks_url: str | None = Field(None, validation_alias=_env("ENRICHER_CHAT_JWKS_URL"))
    chat_dev_login: Literal["on", "off"] = Field("off", validation_alias=_env("ENRICHER_CHAT_DEV_LOGIN"))
    chat_allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("ENRICHER_CHAT_ALLOWED_ORIGINS")
    )
    chat_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        ("localhost", "127.0.0.1"), validation_alias=_env("ENRICHER_CHAT_ALLOWED_HOSTS"), min_length=1
    )
    chat_posts_per_min: int = Field(30, validation_alias=_env("ENRICHER_CHAT_POSTS_PER_MIN"), ge=1)
    studio_tries_per_min: int = Field(10, validation_alias=_env("ENRICHER_STUDIO_TRIES_PER_MIN"), ge=1)
    chat_streams_per_identity: int = Field(
        8, validation_alias=_env("ENRICHER_CHAT_STREAMS_PER_IDENTITY"), ge=1
    )
    chat_streams_total: int = Field(1000, validation_alias=_env("ENRICHER_CHAT_STREAMS_TOTAL"), ge=1)
    shutdown_grace_s: float = Field(30.0, validation_alias=_env("ENRICHER_SHUTDOWN_GRACE_S"), gt=0)
    input_partitions: int = Field(8, validation_alias=_env("ENRICHER_INPUT_PARTITIONS"), ge=1)
    log_level: str = Field("INFO", validation_alias=_env("ENRICHER_LOG_LEVEL"))
    log_format: Literal["json", "console"] = Field("json", validation_alias=_env("ENRICHER_LOG_FORMAT"))
    # none: the reply topics are read by other teams' clients, and KafkaJS reads only gzip
    # without plugins, aiokafka the others only with its codec extras. zstd keeps 65 / 36 / 23%
    # of a reply's bytes in batches of 1 / 3 / 10 (bench/results/codecs.md), for whoever sets it.
    producer_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none", validation_alias=_env("ENRICHER_PRODUCER_COMPRESSION")
    )

    @field_validator("fallback_models", "chat_allowed_origins", "chat_allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("llm_headers", mode="before")
    @classmethod
    def _parse_headers(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as error:
                raise ValueError(f"not a JSON object of header names and values ({error.msg})") from None
        return value

    @field_validator("llm_headers")
    @classmethod
    def _check_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, header in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if any(character in header.get_secret_value() for character in "\r\n\0"):
                raise ValueError(f"the value of {name} has a line break or NUL in it")
        return value

    @field_validator("producer_compression")
    @classmethod
    def _check_codec(cls, value: str) -> str:
        if value != "none" and not getattr(aiokafka.codec, f"has_{value}")():
            raise ValueError(f"the {value} codec is not installed (aiokafka's codec extras)")
        return value

    @field_validator("knowledge_dir")
    @classmethod
    def _check_knowledge_dir(cls, value: Path) -> Path:
        # Its absence is told when the worker starts (templates' rule); a file in its place now.
        if value.exists() and not value.is_dir():
            raise ValueError("must be a directory of articles, not a file")
        return value

    @field_validator("prices_file")
    @classmethod
    def _check_prices(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_prices(value)  # a ValueError names the file and the entry
        return value

    @field_validator("studio_tokens_file")
    @classmethod
    def _check_tokens_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_studio_tokens(value)
        return value

    @field_validator("auth_proxy_header")
    @classmethod
    def _check_proxy_header(cls, value: str | None) -> str | None:
        if value is not None and not HEADER_NAME.fullmatch(value):
            raise ValueError("not an HTTP header name")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return tuple(
                    ipaddress.ip_network(part.strip(), strict=False)
                    for part in value.split(",")
                    if part.strip()
                )
            except ValueError as error:
                raise ValueError(f"not addresses or CIDRs ({error})") from None
        return value

    @field_validator("chat_jwt_secret")
    @classmethod
    def _check_jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_JWT_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_JWT_SECRET_CHARS} characters")
        return value

    @field_validator("chat_jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme != "https" and not is_loopback_url(value)):
            raise ValueError("must be an https URL (or http on this machine)")
        return value

    @field_validator("chat_allowed_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
                raise ValueError(f"{origin!r} is not an origin such as https://chat.example.com")
        return tuple(origin.lower() for origin in value)

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @model_validator(mode="after")
    def _check_cross_fields(self) -> Settings:
        if self.openai_api_key is None and not is_loopback_url(self.openai_base_url):
            raise ValueError("OPENAI_API_KEY: required unless OPENAI_BASE_URL is the built-in mock LLM")
        if self.llm_timeout_s > self.llm_deadline_s:
            raise ValueError("ENRICHER_LLM_TIMEOUT_S: must not exceed ENRICHER_LLM_DEADLINE_S")
        return self

    @model_validator(mode="after")
    def _check_doors(self) -> Settings:
        if self.chat_dev_login == "on" and self.chat_jwt_secret is None:
            raise ValueError("ENRICHER_CHAT_DEV_LOGIN: on needs ENRICHER_CHAT_JWT_SECRET to sign with")
        if self.auth_proxy_header is not None and not self.trusted_proxies:
            raise ValueError(
                "ENRICHER_AUTH_PROXY_HEADER: needs ENRICHER_TRUSTED_PROXIES, the proxy's address"
            )
        return self

    @model_validator(mode="after")
    def _check_redis_cluster(self) -> Settings:
        url = urlsplit(self.redis_url.get_secret_value())
        if self.redis_cluster == "on" and (
            url.scheme not in ("redis", "rediss") or url.path.strip("/") not in ("", "0")
        ):
            # A cluster has database 0 only and no unix sockets.
            raise ValueError(
                "REDIS_URL: ENRICHER_REDIS_CLUSTER=on needs a redis:// or rediss:// URL of database 0"
            )
        return self

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        """What the protocol needs, what it does not use, and PEM files that load."""
        protocol = self.kafka_security_protocol
        sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
        if sasl and self.kafka_sasl_username is None:
            raise ValueError(f"KAFKA_SASL_USERNAME: required with KAFKA_SECURITY_PROTOCOL={protocol}")
        if sasl and not (self.kafka_sasl_password and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(f"KAFKA_SASL_PASSWORD: required with KAFKA_SECURITY_PROTOCOL={protocol}")
        mechanism = self.kafka_sasl_mechanism if "kafka_sasl_mechanism" in self.model_fields_set else None
        sasl_only = {
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        tls_only = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        unused = ({} if sasl else sasl_only) | ({} if tls else tls_only)
        for variable, value in unused.items():
            # Ignored, it would leave out the authentication or the encryption it asks for.
            if value is not None:
                raise ValueError(f"{variable}: set, but KAFKA_SECURITY_PROTOCOL={protocol} does not use it")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            given, missing = (
                ("CERTFILE", "KEYFILE") if self.kafka_ssl_keyfile is None else ("KEYFILE", "CERTFILE")
            )
            raise ValueError(f"KAFKA_SSL_{missing}: required with KAFKA_SSL_{given}: mutual TLS needs both")
        if tls:
            self._check_tls_files()
        return self

    def _check_tls_files(self) -> None:
        """Load the PEM files now, so that a bad one is a configuration error, not a failed connection."""
        try:
            tls_context(self.kafka_ssl_cafile, None, None)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(f"KAFKA_SSL_CAFILE: not a PEM bundle of CA certificates: {error}") from None
        if self.kafka_ssl_certfile is not None:
            try:
                tls_context(None, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
            except (ssl.SSLError, OSError, ValueError) as error:
                raise ValueError(
                    f"KAFKA_SSL_CERTFILE: not a PEM certificate matching KAFKA_SSL_KEYFILE: {error}"
                ) from None

    @property
    def llm_header_values(self) -> dict[str, str]:
        """ENRICHER_LLM_HEADERS as the HTTP client sends them."""
        return {name: value.get_secret_value() for name, value in self.llm_headers.items()}

    @property
    def api_key_value(self) -> str:
        """The key to hand to the client; the loopback mock accepts any."""
        return self.openai_api_key.get_secret_value() if self.openai_api_key else "mock-key"


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


def _first_problem(error: ValidationError) -> tuple[tuple[str | int, ...], str]:
    """Where the first problem is, and what it is."""
    first = error.errors()[0]
    return tuple(first.get("loc", ())), str(first.get("msg", "invalid")).removeprefix("Value error, ")


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    fields = Settings.model_fields
    location, message = _first_problem(error)
    name = str(location[0]) if location else ""
    field = fields.get(name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        variable = str(field.validation_alias.choices[0])
    else:
        variable = name
    if not variable:
        return message
    value = first.get("input")
    shown = "" if any(marker in variable for marker in SECRET_MARKERS) else f" (got {value!r})"
    if isinstance(value, dict):
        shown = ""
    return f"{variable}: {message}{shown}"


def load_settings() -> Settings:
    """Build the settings from the environment and `.env`, or raise SettingsError."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
