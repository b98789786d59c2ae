"""What the mock LLM takes from the customer's orders a prompt lists: the newest one's status.

The shipped templates list the customer's latest orders in the user part, newest first, one a
line: `- A-1042: shipped, placed 2026-12-01, sent with DHL` (prompts/support_reply.j2). Asked
about an order without naming one (a named one is the `order_status` tool's, see tools.py), the
mock answers with the newest, so `make run` shows a demo customer's order in the reply.
"""

from __future__ import annotations

import re

_LISTED = re.compile(r"^The customer's latest orders, newest first:\n- (?P<line>[^\n]+)", re.MULTILINE)
# "order" in the languages of the demo help-center; a word with a digit names an order itself.
_ASKS_ABOUT_ORDERS = re.compile(r"\b(orders?|bestellung\w*|commande\w*|pedidos?)\b", re.IGNORECASE)
_NAMED = re.compile(r"\b\w*\d[\w-]*\b")


def order_answer(prompt: str, customer_text: str) -> str | None:
    """`Your latest order A-1042 is shipped, placed …` when the customer asks about their orders
    without naming one and `prompt` lists them; otherwise None."""
    if not _ASKS_ABOUT_ORDERS.search(customer_text) or _NAMED.search(customer_text):
        return None
    listed = _LISTED.search(prompt)
    if listed is None:
        return None
    order_id, _, facts = listed.group("line").partition(": ")
    return f"Your latest order {order_id} is {facts}." if facts else None
