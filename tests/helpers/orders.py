"""Order records as the orders topic carries them, for tests of the orders agent and the tools."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from app.schemas import Order

PLACED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def order(
    order_id: str,
    customer_id: str = "cust-1",
    status: str = "shipped",
    *,
    placed_days: int = 0,
    updated_minutes: int = 0,
    **fields: Any,
) -> Order:
    """An order of `customer_id`, placed `placed_days` after PLACED and updated `updated_minutes`
    after that; `fields` overrides any other field."""
    placed = PLACED + timedelta(days=placed_days)
    document = {
        "order_id": order_id,
        "customer_id": customer_id,
        "status": status,
        "items": [{"sku": "KB-1", "name": "Mechanical keyboard", "qty": 1}],
        "placed_at": placed.isoformat(),
        "updated_at": (placed + timedelta(minutes=updated_minutes)).isoformat(),
        "carrier": "DHL",
        "tracking_number": f"TRK-{order_id}",
        **fields,
    }
    return Order.model_validate(document)


def order_value(record: Order) -> bytes:
    """The record's value on the orders topic."""
    return json.dumps(record.as_record()).encode()
