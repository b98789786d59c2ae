"""An `http` tool: the answer asked of another service, its URL filled from the arguments, its headers
from the worker's environment, its body bounded and cut down to the fields the tool keeps."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx2

from app.errors import ToolFailed
from app.prompts.tools_file import ENV_REFERENCE, Http, placeholders

MAX_ANSWER_BYTES = 64 * 1024  # an answer the LLM reads: more would crowd out the conversation


async def request(
    http: Http, arguments: Mapping[str, Any], client: httpx2.AsyncClient, environ: Mapping[str, str]
) -> str:
    """The service's answer to the call (its `keep` fields as JSON, or its whole body); ToolFailed
    when it cannot be had. The caller bounds the time."""
    in_url = set(placeholders(http.url))
    url = http.url.format_map({name: quote(_text(arguments[name]), safe="") for name in in_url})
    rest = {name: value for name, value in arguments.items() if name not in in_url}
    headers = {name: _filled(value, environ) for name, value in http.headers.items()}
    body = bytearray()
    try:
        async with client.stream(
            http.method,
            url,
            headers=headers,
            params={name: _text(value) for name, value in rest.items()} if http.method == "GET" else None,
            json=rest if http.method == "POST" else None,
        ) as response:
            if not response.is_success:
                raise ToolFailed(f"the service answered HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise ToolFailed(f"the service's answer is over {MAX_ANSWER_BYTES // 1024} KiB")
    except httpx2.TimeoutException:
        raise ToolFailed("the service did not answer in time") from None
    except httpx2.HTTPError as error:  # its kind only: the LLM needs no more, nor the log
        raise ToolFailed(f"the service cannot be reached ({type(error).__name__})") from None
    text = body.decode("utf-8", "replace")
    return _kept(text, http.keep) if http.keep else text


def _text(value: object) -> str:
    """An argument as it goes into a URL: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _filled(value: str, environ: Mapping[str, str]) -> str:
    """A header value with its `${VARIABLE}`s from the environment; ToolFailed naming a missing one."""
    missing = [name for name in ENV_REFERENCE.findall(value) if name not in environ]
    if missing:
        raise ToolFailed(f"the tool is not set up: the worker has no {missing[0]} in its environment")
    return ENV_REFERENCE.sub(lambda match: environ[match.group(1)], value)


def _kept(text: str, keep: tuple[str, ...]) -> str:
    """Only the `keep` fields of a JSON object answer, as JSON."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise ToolFailed("the service's answer is not JSON") from None
    if not isinstance(document, dict):
        raise ToolFailed("the service's answer is not a JSON object")
    return json.dumps({name: document[name] for name in keep if name in document}, ensure_ascii=False)
