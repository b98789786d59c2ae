"""The control topic's records: commands to the workers, e.g. give a conversation back to the AI.

Key: the conversation id. Value: `{"command": "release", "conversation_id": "..."}`; unknown
fields are ignored, as on the input topic.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from app.errors import InvalidMessage
from app.schemas import Identifier, json_object
from app.validation import one_line


class ControlCommand(BaseModel):
    """One command of the control topic; `release` is the only one so far."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    command: Literal["release"]
    conversation_id: Identifier

    @classmethod
    def release(cls, conversation_id: str) -> ControlCommand:
        """The command that gives `conversation_id` back to the AI; ValidationError for a bad id."""
        return cls(command="release", conversation_id=conversation_id)

    def key(self) -> bytes:
        """The record's key: the conversation, so its commands keep their order."""
        return self.conversation_id.encode()

    def value(self) -> bytes:
        """The record's value, as JSON."""
        return self.model_dump_json().encode()


def parse_command(raw: bytes | None) -> ControlCommand:
    """Decode a control record; InvalidJson (not UTF-8 JSON, or no value) or InvalidMessage (not a
    known command, or its fields are wrong), as the dead letter's kind should say."""
    document = json_object(raw)
    try:
        return ControlCommand.model_validate(document)
    except ValidationError as error:
        raise InvalidMessage(one_line(error)) from None
