"""A `lookup` tool: the answer read from a table the worker keeps, the asking customer's rows only."""

from __future__ import annotations

import json

from app.context import ContextStore
from app.errors import ContextUnavailable, ToolFailed
from app.prompts.tools_file import Lookup


async def look_up(lookup: Lookup, key: str, customer_id: str | None, context: ContextStore) -> str:
    """The row `key` of the customer's table as JSON, or a "not found" line: another customer's row is
    never read, as only the asking customer's orders are. Raises ToolFailed while Redis is down."""
    try:
        orders = await context.orders(customer_id) if customer_id else []
    except ContextUnavailable:
        raise ToolFailed("the orders cannot be read just now") from None
    wanted = key.strip().casefold()  # customers write `a-1042` for `A-1042`
    found = next((order for order in orders if order.order_id.casefold() == wanted), None)
    if found is None:
        return f"not found: the customer has no order {key!r}"
    record = found.as_record()
    del record["customer_id"]  # the LLM needs the order, not our id for the customer
    return json.dumps(record, ensure_ascii=False)
