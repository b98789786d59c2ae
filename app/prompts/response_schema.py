"""Structured replies: the response schema a template declares, checked when it loads, and the LLM's
answer read against it.

A reply template may ask for a JSON object instead of text, in its front matter:

    response:
      text_field: reply          # the property that is the customer's text (default `reply`)
      format: json_schema        # the call sends the schema (`json_schema`), or asks for any JSON
                                 # object (`json_object`, for providers without schemas)
      strict: false              # OpenAI's strict mode: every property required, no others allowed
      schema:                    # JSON Schema; its meta-schema checks it when the template loads
        type: object
        required: [reply, needs_human, category]
        properties:
          reply: {type: string}
          needs_human: {type: boolean}
          category: {type: string, enum: [order, billing, account, other]}

The text field must be a required string property. An answer is parsed and validated here;
asking again when it fails is the pipeline's (`app/pipeline.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field

from app.errors import InvalidStructured

Location = tuple[str | int, ...]
"""Where in the front matter's `response:` part, as keys and list positions."""
# A repair request quotes this much of what was wrong; a dead letter names this much of the rule.
MAX_EXPLANATION_CHARS = 500
MAX_RULE_CHARS = 120
REPAIR_REQUEST = (
    "Your answer above is not valid: {explanation}. Answer again with only one JSON object that "
    "matches the response schema, and nothing before or after it."
)


class ResponseFormat(BaseModel):
    """The `response:` part of a template's front matter, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_field: Annotated[str, Field(min_length=1)] = "reply"
    format: Literal["json_schema", "json_object"] = "json_schema"
    strict: bool = False
    json_schema: dict[str, Any] = Field(alias="schema")

    def problem(self) -> tuple[Location, str] | None:
        """The first thing wrong with the schema, and where, or None: the schema must pass its
        meta-schema, describe an object, and have the text field as a required string."""
        try:
            json.dumps(self.json_schema)
        except (TypeError, ValueError):
            return ("schema",), "holds a value that is not JSON (a date? put it in quotes)"
        try:
            validator_for(self.json_schema, default=Draft202012Validator).check_schema(self.json_schema)
        except SchemaError as error:
            return ("schema", *error.path), f"is not valid JSON Schema: {error.message}"
        if self.json_schema.get("type") != "object":
            return ("schema",), "must be `type: object`: the answer is one JSON object"
        field = self.json_schema.get("properties", {}).get(self.text_field)
        if self.text_field not in self.json_schema.get("required", ()) or not (
            isinstance(field, dict) and field.get("type") == "string"
        ):
            return ("text_field",), (
                f"names `{self.text_field}`, which must be a property of the schema with "
                "`type: string`, listed in its `required`"
            )
        return None


@dataclass(frozen=True)
class ResponseSchema:
    """A checked `response:` part: how the call asks for JSON, and how the answer is read."""

    declared: ResponseFormat
    validator: Validator

    @classmethod
    def of(cls, declared: ResponseFormat) -> ResponseSchema:
        """The schema `declared` describes; it must have no `problem()`."""
        schema = declared.json_schema
        return cls(declared, validator_for(schema, default=Draft202012Validator)(schema))

    @property
    def text_field(self) -> str:
        """The property that is the customer's text."""
        return self.declared.text_field

    def request_format(self, name: str) -> dict[str, Any]:
        """The chat request's `response_format`, as the OpenAI API has it; `name` is the template's."""
        if self.declared.format == "json_object":
            return {"type": "json_object"}
        schema = {"name": name, "schema": self.declared.json_schema, "strict": self.declared.strict}
        return {"type": "json_schema", "json_schema": schema}

    def read(self, answer: str) -> dict[str, Any]:
        """The answer as the object the schema describes; InvalidStructured says what is wrong."""
        try:
            value = json.loads(answer)
        except json.JSONDecodeError as error:
            problem = f"not JSON: {error.msg} at line {error.lineno} column {error.colno}"
            raise InvalidStructured(problem, problem) from None
        failed: ValidationError | None = best_match(self.validator.iter_errors(value))
        if failed is not None:
            # The dead letter names the rule, never the answer's words: dead letters are read by many.
            rule = json.dumps({failed.validator: failed.validator_value})[:MAX_RULE_CHARS]
            explanation = f"at {failed.json_path}: {failed.message}"[:MAX_EXPLANATION_CHARS]
            raise InvalidStructured(f"{failed.json_path} fails the schema's rule {rule}", explanation)
        assert isinstance(value, dict)  # the schema is `type: object`
        return value

    @staticmethod
    def repair_request(error: InvalidStructured) -> str:
        """The user message that asks the LLM again, saying what was wrong with its answer."""
        return REPAIR_REQUEST.format(explanation=error.explanation)


def strings(value: object) -> Iterator[str]:
    """Every string in a JSON value, keys left out, depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def map_strings(value: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A JSON object with `change` applied to each of its strings (keys left as they are)."""
    return {key: _mapped(item, change) for key, item in value.items()}


def _mapped(value: object, change: Callable[[str], str]) -> object:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return map_strings(value, change)
    if isinstance(value, list):
        return [_mapped(item, change) for item in value]
    return value
