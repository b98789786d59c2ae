"""Prices: cost of a call from the table, dated model names, unknown models, the prices file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.prices import BUILT_IN, PriceTable
from app.schemas import Usage
from app.settings import Settings, SettingsError, load_settings

USAGE = Usage(prompt_tokens=1000, completion_tokens=200, total_tokens=1200, cached_tokens=400)


def test_cost_is_tokens_times_price_with_cached_input_cheaper() -> None:
    price = BUILT_IN["gpt-4o-mini"]
    expected = (600 * price.input + 400 * (price.cached_input or 0) + 200 * price.output) / 1_000_000
    assert PriceTable.load(None).cost_usd("gpt-4o-mini", USAGE) == pytest.approx(expected)
    assert PriceTable.load(None).cost_usd("gpt-4o-mini-2024-07-18", USAGE) == pytest.approx(expected)


def test_an_unknown_model_has_no_cost_never_a_guess() -> None:
    assert PriceTable.load(None).cost_usd("mock-small", USAGE) is None


def test_a_prices_file_replaces_the_table_and_cached_input_defaults_to_input(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("house-model:\n  input: 1.0\n  output: 2.0\n")
    table = PriceTable.load(path)
    assert table.cost_usd("house-model", USAGE) == pytest.approx((1000 * 1.0 + 200 * 2.0) / 1_000_000)
    assert table.cost_usd("gpt-4o-mini", USAGE) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [("- not a mapping\n", "expected a mapping"), ("m:\n  input: -1\n  output: 1\n", "m.input:")],
)
def test_a_bad_prices_file_stops_the_worker_naming_the_setting_and_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    for name in ("ENRICHER_PRICES_FILE", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ENRICHER_PRICES_FILE", str(path))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"ENRICHER_PRICES_FILE: {path}: ")
    assert problem in str(caught.value)
    assert Settings.model_fields["prices_file"].default is None
