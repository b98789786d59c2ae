"""Structured replies' front matter: a response schema checked when the template loads (problems at
file:line, the last good set kept on reload), and answers read against it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.errors import InvalidStructured
from app.prompts.library import PromptLibrary, PromptSource
from app.prompts.response_schema import ResponseSchema
from tests.helpers.template_cases import GOOD_SYSTEM, GOOD_USER, line_of, load_error, message, write
from tests.helpers.workers import PROMPTS

RESPONSE = """response:
  text_field: {text_field}
  schema:
    type: object
    required: [reply, needs_human]
    properties:
      reply: {{type: {reply_type}}}
      needs_human: {{type: boolean}}
"""
CONDITIONS = "when:\n  channel: email\n"


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped templates and samples to add structured templates to."""
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


def structured(directory: Path, text_field: str = "reply", reply_type: str = "string") -> Path:
    """An e-mail reply template declaring a response schema."""
    response = RESPONSE.format(text_field=text_field, reply_type=reply_type)
    return write(directory, "email.j2", GOOD_SYSTEM + GOOD_USER, extra=CONDITIONS + response)


def schema_of(directory: Path) -> ResponseSchema:
    library = PromptLibrary.load(directory)
    template = library.select(message(channel="email"), {})
    assert template.response is not None
    return template.response


def test_a_declared_schema_is_asked_for_with_the_call(prompts: Path) -> None:
    structured(prompts)

    schema = schema_of(prompts)

    assert schema.text_field == "reply"
    assert schema.request_format("support_reply") == {
        "type": "json_schema",
        "json_schema": {
            "name": "support_reply",
            "schema": {
                "type": "object",
                "required": ["reply", "needs_human"],
                "properties": {"reply": {"type": "string"}, "needs_human": {"type": "boolean"}},
            },
            "strict": False,
        },
    }
    assert PromptLibrary.load(prompts).select(message(), {}).response is None


def test_a_schema_its_meta_schema_refuses_is_rejected_at_its_line(prompts: Path) -> None:
    path = structured(prompts, reply_type="strng")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'response:')}"
    assert error.reason.startswith(
        "front matter field `response` is wrong at `schema.properties.reply.type`: is not valid JSON Schema"
    )


@pytest.mark.parametrize(("text_field", "reply_type"), [("answer", "string"), ("reply", "boolean")])
def test_the_text_field_must_be_a_required_string(prompts: Path, text_field: str, reply_type: str) -> None:
    path = structured(prompts, text_field=text_field, reply_type=reply_type)

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'response:')}"
    assert f"is wrong at `text_field`: names `{text_field}`, which must be a property" in error.reason


def test_a_fallback_cannot_declare_a_schema(prompts: Path) -> None:
    path = prompts / "fallback.j2"
    source = path.read_text(encoding="utf-8")
    path.write_text(
        source.replace(
            "kind: fallback\n", "kind: fallback\n" + RESPONSE.format(text_field="reply", reply_type="string")
        ),
        encoding="utf-8",
    )

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'response:')}"
    assert (
        error.reason == "front matter field `response` is only for reply templates: this one is sent as it is"
    )


def test_a_broken_schema_on_reload_keeps_the_last_good_set(prompts: Path) -> None:
    path = structured(prompts)
    source = PromptSource.load(prompts)
    good = source.current

    path.write_text(path.read_text(encoding="utf-8").replace("type: boolean", "type: 7"), encoding="utf-8")

    assert source.reload() is False
    assert source.current is good
    assert good.select(message(channel="email"), {}).response is not None


def test_an_answer_is_read_against_the_schema(prompts: Path) -> None:
    structured(prompts)
    schema = schema_of(prompts)

    assert schema.read('{"reply": "Hi Ada", "needs_human": true}') == {"reply": "Hi Ada", "needs_human": True}
    with pytest.raises(InvalidStructured) as not_json:
        schema.read("Sure! Here is your answer.")
    assert str(not_json.value) == "not JSON: Expecting value at line 1 column 1"
    with pytest.raises(InvalidStructured) as wrong:
        schema.read(json.dumps({"reply": "call me at [PHONE_1]", "needs_human": "maybe"}))
    # The dead letter names the rule; only the repair request quotes the answer.
    assert str(wrong.value) == '$.needs_human fails the schema\'s rule {"type": "boolean"}'
    assert "'maybe' is not of type 'boolean'" in wrong.value.explanation
    assert "'maybe'" in ResponseSchema.repair_request(wrong.value)
