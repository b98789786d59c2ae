"""`prompts/tools.yaml`, the tools the LLM may call while it writes a reply: each declared in the
OpenAI tools format, with what serves it, read with each problem at its line.

    tools:
      - name: order_status                  # what the LLM calls: letters, digits, `_` and `-`
        description: The status of one of the customer's orders.
        parameters:                         # the arguments, a JSON Schema of an object
          type: object
          properties:
            order_id: {type: string, description: "The order number, e.g. A-1042"}
          required: [order_id]
        timeout_s: 2                        # optional: the answer must come within (default 2)
        lookup: {table: orders, key: order_id}        # the customer's own orders, by this argument
      - name: delivery_estimate
        description: When the carrier expects to deliver a parcel.
        parameters: {type: object, properties: {tracking_number: {type: string}}, required: [tracking_number]}
        http:
          url: https://carrier.example/v1/parcels/{tracking_number}   # {argument}: URL-quoted
          method: GET                       # or POST: the other arguments as a JSON body (GET: the query)
          headers: {Authorization: "Bearer ${CARRIER_TOKEN}"}        # ${VARIABLE}: the worker's environment
          keep: [status, eta]               # optional: only these fields of a JSON answer

No file means no tools. Like handoff.yaml the file is read node by node (`yaml.compose`), so that
each mistake is reported at its line; the arguments' schema is checked against the JSON Schema
meta-schema (`jsonschema`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from yaml.constructor import ConstructorError, SafeConstructor

from app.errors import TemplateError, where
from app.prompts.file_format import FIELD_PROBLEMS
from app.settings import HEADER_NAME

FILE_NAME = "tools.yaml"
DEFAULT_TIMEOUT_S = 2.0
MAX_TIMEOUT_S = 30.0  # the LLM waits on every tool of a round before it writes on
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
Loc = Sequence[str | int]


class Lookup(BaseModel):
    """A tool answered from a table the worker keeps: the asking customer's rows only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Literal["orders"]
    key: Annotated[str, Field(min_length=1)]
    """The argument holding the row's id (for orders, the `order_id`)."""


class Http(BaseModel):
    """A tool answered by an HTTP request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    keep: tuple[Annotated[str, Field(min_length=1)], ...] = ()
    """The fields of a JSON object answer the LLM is given; empty: the whole answer."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL, e.g. https://api.example.com/orders/{order_id}")
        if "{" in parts.netloc:
            raise ValueError("may have {arguments} in its path and query only, not in its host")
        placeholders(url)  # a ValueError for a stray brace
        return url

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if any(character in value for character in "\r\n\0"):
                raise ValueError(f"the value of {name} has a line break in it")
        return headers

    @property
    def variables(self) -> frozenset[str]:
        """The environment variables its headers name."""
        return frozenset(n for value in self.headers.values() for n in ENV_REFERENCE.findall(value))


class ToolSpec(BaseModel):
    """One tool of the file: its declaration to the LLM, its timeout and what serves it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: Annotated[str, Field(min_length=1)]
    parameters: dict[str, Any]
    timeout_s: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = DEFAULT_TIMEOUT_S
    lookup: Lookup | None = None
    http: Http | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ToolSpec:
        if (self.lookup is None) == (self.http is None):
            raise ValueError("give the tool exactly one of `lookup:` and `http:`: what answers it")
        return self

    def declaration(self) -> dict[str, Any]:
        """The tool as the OpenAI `tools` request parameter declares it."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolSet:
    """The tools of a file, in file order; none: the LLM is offered no tools."""

    tools: tuple[ToolSpec, ...] = ()

    @property
    def names(self) -> frozenset[str]:
        """The tools' names."""
        return frozenset(tool.name for tool in self.tools)

    def pick(self, names: Collection[str] | None) -> tuple[ToolSpec, ...]:
        """The tools `names` names, in file order; None: every tool."""
        return self.tools if names is None else tuple(tool for tool in self.tools if tool.name in names)


NO_TOOLS = ToolSet()


def placeholders(url: str) -> list[str]:
    """The `{argument}` names of a URL template; ValueError for a brace without its pair."""
    return [name for _, name, _, _ in string.Formatter().parse(url) if name is not None]


def read_tools(path: Path) -> tuple[ToolSet, list[TemplateError]]:
    """The tools of the file that are right, and a problem (`file:line`) for each mistake in it.

    No file: no tools and no problem.
    """
    if not path.exists():
        return NO_TOOLS, []
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        return NO_TOOLS, [TemplateError(f"cannot read the file: {error}", str(path))]
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else 1
        return NO_TOOLS, [TemplateError(f"not valid YAML: {error.problem}", f"{path}:{line}")]
    found: list[tuple[int, str]] = []
    tools: list[ToolSpec] = []
    lines: dict[str, int] = {}
    for item in _tool_nodes(root, found):
        tool = _read_tool(item, found)
        if tool is None:
            continue
        line = item.start_mark.line + 1
        earlier = lines.setdefault(tool.name, line)
        if earlier != line:
            found.append((line, f"a tool named '{tool.name}' is on line {earlier} already: rename one"))
            continue
        tools.append(tool)
    problems = [
        TemplateError(message, f"{path}:{line}") for line, message in sorted(found, key=lambda f: f[0])
    ]
    return ToolSet(tuple(tools)), problems


def _tool_nodes(root: yaml.Node | None, found: list[tuple[int, str]]) -> list[yaml.Node]:
    """The nodes of the `tools:` list; a problem when the file is not `tools:` and a list."""
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        found.append((root.start_mark.line + 1, "the file must start with `tools:`, then `- name:` lines"))
        return []
    items: list[yaml.Node] = []
    for key, value in root.value:
        line = key.start_mark.line + 1
        if key.value != "tools":
            found.append((line, f"unknown key `{key.value}`: the file has only `tools:`"))
        elif isinstance(value, yaml.SequenceNode):
            items += value.value
        elif not (isinstance(value, yaml.ScalarNode) and value.tag == "tag:yaml.org,2002:null"):
            found.append((line, "`tools:` must be followed by a list of tools, each starting with `- name:`"))
    return items


def _read_tool(node: yaml.Node, found: list[tuple[int, str]]) -> ToolSpec | None:
    """One tool, or None after reporting each of its mistakes at its line."""
    try:
        document = SafeConstructor().construct_object(node, deep=True)
    except ConstructorError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else node.start_mark.line + 1
        found.append((line, f"not valid YAML: {error.problem}"))
        return None
    if not isinstance(document, dict):
        found.append(
            (node.start_mark.line + 1, "a tool must be `name:`, `description:`, `parameters:` and more")
        )
        return None
    try:
        tool = ToolSpec.model_validate(document)
    except ValidationError as error:
        for problem in error.errors():
            message = FIELD_PROBLEMS.get(problem["type"], str(problem["msg"]).removeprefix("Value error, "))
            at = problem["loc"]
            found.append((_line(node, at), f"`{where(at)}` {message}" if at else message))
        return None
    schema_problems = _schema_problems(tool)
    found += [(_line(node, loc), message) for loc, message in schema_problems]
    return None if schema_problems else tool


def _schema_problems(tool: ToolSpec) -> list[tuple[Loc, str]]:
    """The arguments' schema checked, and what the tool's source takes from the arguments."""
    schema = tool.parameters
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as error:
        return [(("parameters", *error.path), f"`parameters` is not a valid JSON Schema: {error.message}")]
    if schema.get("type") != "object":
        return [
            (("parameters",), "`parameters` must be a schema of `type: object`, its properties the arguments")
        ]
    required = set(schema.get("required", ())) & set(schema.get("properties", {}))
    if tool.lookup is not None and tool.lookup.key not in required:
        return [(("lookup", "key"), f"`{tool.lookup.key}` must be a required property of `parameters`")]
    if tool.http is not None:
        missing = [name for name in placeholders(tool.http.url) if name not in required]
        if missing:
            return [(("http", "url"), f"{{{missing[0]}}} must be a required property of `parameters`")]
    return []


def _line(node: yaml.Node, loc: Loc) -> int:
    """The line of the value at `loc` inside `node`, or of the deepest part of it that exists."""
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            child = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        else:
            child = None
        if child is None:
            break
        node = child
    return node.start_mark.line + 1
