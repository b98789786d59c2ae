"""The contract's Redis keys, and the ones this repository adds, in one place: whoever reads or writes them
(the worker, the chat gateway, the operator tools) names them from here."""

from __future__ import annotations


def profile_key(customer_id: str) -> str:
    """Hash of profile fields of one customer."""
    return f"customer:{customer_id}"


def orders_key(customer_id: str) -> str:
    """Hash of one customer's recent orders: order_id -> the order record as JSON."""
    return f"customer:{customer_id}:orders"


def history_key(conversation_id: str) -> str:
    """List of JSON turns of one conversation, newest last."""
    return f"conversation:{conversation_id}:history"


def reply_key(message_id: str) -> str:
    """The published reply to one message, as JSON."""
    return f"reply:{message_id}"


def published_key(message_id: str) -> str:
    """Set once the broker has acknowledged the reply to one message: a redelivery skips it."""
    return f"reply:{message_id}:published"


def failure_key(message_id: str) -> str:
    """Why a fallback reply to one message was made (its dead letter's kind and detail): a
    redelivery that publishes the stored fallback again writes its dead letter again too."""
    return f"reply:{message_id}:failure"


def state_key(conversation_id: str) -> str:
    """`human` while a human has the conversation; absent otherwise (the contract's key)."""
    return f"conversation:{conversation_id}:state"


def fallback_streak_key(conversation_id: str) -> str:
    """How many of the conversation's latest replies in a row were the fallback."""
    return f"conversation:{conversation_id}:fallbacks"


def owner_key(conversation_id: str) -> str:
    """The customer who first wrote in the conversation: only they may post, listen, read its replies."""
    return f"conversation:{conversation_id}:owner"


def replayed_key(dlq_topic: str, letter_id: str) -> str:
    """Set once the dead letter `letter_id` (`partition:offset`) of `dlq_topic` is back on the input
    topic: `enricher dlq replay` replays each at most once."""
    return f"dlq:replayed:{dlq_topic}:{letter_id}"
