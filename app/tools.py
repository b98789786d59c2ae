"""The tools one reply may call: the tools of prompts/tools.yaml its template allows, served for the
asking customer, each call checked against the tool's schema and bounded by its timeout.

`Toolbox` is opened once per worker (it holds the HTTP client); `Toolbox.for_customer` gives the
`ToolRunner` (app/llm/tool_calls.py) of one reply. A tool is served by a `lookup` (a table the
worker keeps, the asking customer's rows only) or an `http` request (its URL filled from the
arguments, its headers from the worker's environment, its answer bounded and cut down to the fields
it keeps). A call never raises: whatever goes wrong (an unknown tool, bad arguments, a timeout, an
HTTP error) is the call's result, `error: ...`, which the LLM reads and answers around.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx2
import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from app.context import ContextStore
from app.errors import ContextUnavailable, ToolFailed
from app.llm.tool_calls import ToolCall, ToolResult
from app.prompts.tools_file import ENV_REFERENCE, MAX_TIMEOUT_S, Http, Lookup, ToolSpec, placeholders

log = logging.getLogger(__name__)

# Every HTTP tool's request is bounded by its own timeout_s; these only cap what no tool may pass.
HTTP_TIMEOUT = httpx2.Timeout(MAX_TIMEOUT_S, connect=min(3.0, MAX_TIMEOUT_S))
HTTP_LIMITS = httpx2.Limits(max_connections=64, max_keepalive_connections=16)


class Toolbox:
    """What serves the tools for every reply of a worker: the customer's orders in Redis, one HTTP
    client, and the environment the HTTP tools' headers take their `${VARIABLE}`s from."""

    def __init__(
        self, context: ContextStore, environ: Mapping[str, str], client: httpx2.AsyncClient | None = None
    ) -> None:
        self._context = context
        self._environ = dict(environ)
        self._client = client or httpx2.AsyncClient(
            timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS, follow_redirects=False
        )

    def for_customer(
        self, customer_id: str | None, tools: Sequence[ToolSpec], told: list[str] | None = None
    ) -> CustomerTools:
        """The tools of one reply, `tools` (`PromptLibrary.tools_for(template)`), answering for the
        customer `customer_id` (a message without one finds no orders); what each call that succeeds
        returns is added to `told`, unmasked (the output guard lets the reply repeat it)."""
        return CustomerTools(self, customer_id, tools, told)

    async def run(self, tool: ToolSpec, arguments: Mapping[str, Any], customer_id: str | None) -> str:
        """What `tool` answers to checked `arguments`; ToolFailed when it cannot."""
        if tool.lookup is not None:
            return await look_up(tool.lookup, str(arguments[tool.lookup.key]), customer_id, self._context)
        if tool.http is not None:
            return await request(tool.http, arguments, self._client, self._environ)
        raise AssertionError(f"tool {tool.name} has no source: tools_file.ToolSpec requires one")

    async def aclose(self) -> None:
        """Close the HTTP client's connections."""
        await self._client.aclose()


class CustomerTools:
    """The `ToolRunner` of one reply: its template's tools, for its customer."""

    def __init__(
        self,
        toolbox: Toolbox,
        customer_id: str | None,
        tools: Sequence[ToolSpec],
        told: list[str] | None = None,
    ) -> None:
        self._toolbox = toolbox
        self._customer_id = customer_id
        self._tools = {tool.name: tool for tool in tools}
        self._told = told if told is not None else []

    def declarations(self) -> list[dict[str, Any]]:
        """The tools as the OpenAI `tools` request parameter declares them; [] when there are none."""
        return [tool.declaration() for tool in self._tools.values()]

    async def run(self, call: ToolCall) -> ToolResult:
        """Run one call within its tool's timeout; never raises (a failure is an `error: ...` result)."""
        tool = self._tools.get(call.name)
        try:
            if tool is None:
                raise ToolFailed(f"there is no tool {call.name!r}: the tools are {', '.join(self._tools)}")
            arguments = _arguments(tool, call.arguments)
            async with asyncio.timeout(tool.timeout_s):
                answered = await self._toolbox.run(tool, arguments, self._customer_id)
            self._told.append(answered)
            return ToolResult(answered, ok=True)
        except TimeoutError:
            return _failed(call, f"no answer within {tool.timeout_s:g} s" if tool else "timed out")
        except ToolFailed as error:
            return _failed(call, str(error))
        except Exception:  # a reply must not fail for a tool: the contract's ToolRunner never raises
            log.exception("tool call broke", extra={"tool": call.name})
            return ToolResult("error: the tool broke", ok=False)


def _arguments(tool: ToolSpec, text: str) -> dict[str, Any]:
    """The call's arguments, checked against the tool's schema; ToolFailed saying what is wrong."""
    try:
        arguments = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise ToolFailed("bad arguments: not a JSON object") from None
    if not isinstance(arguments, dict):
        raise ToolFailed("bad arguments: not a JSON object")
    validator = jsonschema.validators.validator_for(tool.parameters, default=jsonschema.Draft202012Validator)
    problem = jsonschema.exceptions.best_match(validator(tool.parameters).iter_errors(arguments))
    if problem is not None:
        at = ".".join(str(part) for part in problem.path)
        raise ToolFailed(f"bad arguments: {at + ': ' if at else ''}{problem.message}")
    return arguments


def _failed(call: ToolCall, reason: str) -> ToolResult:
    log.warning("tool call failed", extra={"tool": call.name, "reason": reason})
    return ToolResult(f"error: {reason}", ok=False)


# The lookup tools.


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


# The http tools.

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
