"""The mock LLM's JSON answers: a request with `response_format` gets a JSON object, as a provider's
structured output gives.

With `json_schema`, the object has every required property of the schema, filled by its type:
a string is the mock's usual composed answer (so the template's text field reads as a reply),
an `enum` or `const` its first value, a number its `minimum` or 0, a boolean false, an array
its `minItems` of items, an object its own required properties. With `json_object`, it is
`{"reply": <the composed answer>}`. A scripted answer (`POST /_mock/script` with `text`) is sent
as it is, so tests can script invalid JSON or a chosen object.
"""

from __future__ import annotations

import json

from devstack.mock_llm.state import Json


def json_answer(response_format: Json, text: str) -> str | None:
    """The JSON answer `response_format` asks for, its strings `text`; None when it asks for text."""
    kind = response_format.get("type")
    if kind == "json_object":
        return json.dumps({"reply": text})
    if kind != "json_schema":
        return None
    declared = response_format.get("json_schema")
    schema = declared.get("schema") if isinstance(declared, dict) else None
    return json.dumps(_filled(schema if isinstance(schema, dict) else {"type": "object"}, text))


def _filled(schema: Json, text: str) -> object:
    """A value of `schema`, by its first type; strings are `text`, cut to `maxLength`."""
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for alternatives in ("anyOf", "oneOf"):
        if isinstance(schema.get(alternatives), list) and schema[alternatives]:
            return _filled(schema[alternatives][0], text)
    kinds = schema.get("type", "object")
    kind = next((k for k in kinds if k != "null"), "null") if isinstance(kinds, list) else kinds
    match kind:
        case "object":
            properties = schema.get("properties", {})
            return {name: _filled(properties.get(name, {}), text) for name in schema.get("required", ())}
        case "array":
            return [_filled(schema.get("items", {}), text) for _ in range(schema.get("minItems", 0))]
        case "string":
            return text[: schema.get("maxLength", len(text))]
        case "integer" | "number":
            return schema.get("minimum", 0)
        case "boolean":
            return False
        case _:
            return None
