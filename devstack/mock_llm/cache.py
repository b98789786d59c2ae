"""The mock LLM's prompt cache: a request that repeats an earlier request's prefix is partly cached.

Like a provider's prompt cache, and simpler: the prefix is every message before the last one
(system prompt, profile, history), and when the same model saw exactly that prefix before, its
tokens are reported as `usage.prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from app.tokens import ChatMessage, count_chat

CAPACITY = 10_000


class PromptCache:
    """The prefixes seen lately, least recently used dropped first."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def details(self, model: str, messages: Sequence[ChatMessage]) -> dict[str, Any]:
        """`{"prompt_tokens_details": {"cached_tokens": n}}` for this request, and remember its prefix."""
        prefix = list(messages[:-1])
        if not prefix:
            return {"prompt_tokens_details": {"cached_tokens": 0}}
        key = hashlib.sha256(json.dumps([model, prefix]).encode()).hexdigest()
        hit = key in self._seen
        self._seen[key] = None
        self._seen.move_to_end(key)
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return {"prompt_tokens_details": {"cached_tokens": count_chat(prefix, model) if hit else 0}}
