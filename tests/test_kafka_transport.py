"""The worker's consumer transport is found through its entry point and waits briefly per fetch."""

from __future__ import annotations

import faust.transport

from app import kafka_transport
from app.faust_app import build_app
from app.settings import Settings


def test_transport_is_registered_for_its_scheme() -> None:
    assert faust.transport.by_url(f"{kafka_transport.SCHEME}://localhost:9092") is kafka_transport.Transport


def test_app_consumes_through_it_and_produces_through_plain_kafka() -> None:
    settings = Settings.model_validate(
        {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"}
    )
    app = build_app(settings)
    assert [str(url) for url in app.conf.broker_consumer] == [
        "kafka-fastfetch://a:1",
        "kafka-fastfetch://b:2",
    ]
    assert [str(url) for url in app.conf.broker_producer] == ["kafka://a:1", "kafka://b:2"]
