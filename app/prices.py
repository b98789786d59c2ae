"""What a reply cost: per-model prices per million tokens, built in or from ENRICHER_PRICES_FILE.

The file is YAML, a mapping of model name to `input`, `cached_input` and `output` prices in
USD per million tokens; it replaces the built-in table. A model missing from the table has no
price: its cost is None, never a guess. A provider's dated model name (`gpt-4o-mini-2024-07-18`)
is priced as its base name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from app.schemas import Usage
from app.settings import Price, read_prices

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")
PER_TOKENS = 1_000_000


# List prices of OpenAI's API, USD per million tokens (input, cached input, output).
BUILT_IN: dict[str, Price] = {
    "gpt-4o-mini": Price(input=0.15, cached_input=0.075, output=0.60),
    "gpt-4o": Price(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4.1": Price(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": Price(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": Price(input=0.10, cached_input=0.025, output=0.40),
    "o4-mini": Price(input=1.10, cached_input=0.275, output=4.40),
    "gpt-3.5-turbo": Price(input=0.50, output=1.50),
}


def base_model(model: str) -> str:
    """A provider's dated model name without its date: `gpt-4o-mini-2024-07-18` → `gpt-4o-mini`."""
    return _DATED.sub("", model)


class PriceTable:
    """Prices by model; `cost_usd` of one call's usage."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    @classmethod
    def load(cls, path: Path | None) -> PriceTable:
        """The built-in table, or the file's; raises ValueError naming what is wrong in the file."""
        return cls(BUILT_IN if path is None else read_prices(path))

    def price_of(self, model: str) -> Price | None:
        """The model's price, its dated name priced as the base name; None when unknown."""
        return self._prices.get(model) or self._prices.get(base_model(model))

    def cost_usd(self, model: str, usage: Usage) -> float | None:
        """What `usage` cost on `model`; None when the model has no price."""
        price = self.price_of(model)
        if price is None:
            return None
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_rate = price.input if price.cached_input is None else price.cached_input
        dollars = (
            (usage.prompt_tokens - cached) * price.input
            + cached * cached_rate
            + usage.completion_tokens * price.output
        )
        return round(dollars / PER_TOKENS, 10)
