"""Placeholders: one per value across a conversation's texts, and the originals put back."""

from __future__ import annotations

import json
from typing import Any

from app.llm.tool_calls import ToolCall, ToolResult
from app.schemas import CustomerMessage, HistoryTurn
from app.signals.pii import MaskedTools, mask, prompt_texts

HISTORY = "My address is Ada@Example.com and my card 4111 1111 1111 1111."
MESSAGE = "Still nothing at ada@example.com; card 4111111111111111, call +44 20 7946 0958."


def test_a_value_has_one_placeholder_across_texts_however_it_is_written() -> None:
    masked = mask([HISTORY, MESSAGE])

    assert masked.texts == (
        "My address is [EMAIL_1] and my card [CARD_1].",
        "Still nothing at [EMAIL_1]; card [CARD_1], call [PHONE_1].",
    )
    assert masked.kinds == ("email", "card", "phone")
    assert masked.originals == {
        "[EMAIL_1]": "Ada@Example.com",
        "[CARD_1]": "4111 1111 1111 1111",
        "[PHONE_1]": "+44 20 7946 0958",
    }


def test_different_values_get_different_numbers() -> None:
    masked = mask(["a@example.com or b@example.com", "b@example.com"])

    assert masked.texts == ("[EMAIL_1] or [EMAIL_2]", "[EMAIL_2]")


def test_restore_puts_the_originals_back_and_leaves_invented_placeholders() -> None:
    masked = mask([MESSAGE])

    answer = "We will write to [EMAIL_1] and call [PHONE_1], not [PHONE_2] or [IBAN_1]."

    assert masked.restore(answer) == (
        "We will write to ada@example.com and call +44 20 7946 0958, not [PHONE_2] or [IBAN_1]."
    )


def test_placeholders_the_customer_typed_are_not_reused() -> None:
    masked = mask(["I typed [EMAIL_1] literally; mine is ada@example.com"])

    assert masked.texts == ("I typed [EMAIL_1] literally; mine is [EMAIL_2]",)
    assert masked.restore("[EMAIL_1] / [EMAIL_2]") == "[EMAIL_1] / ada@example.com"


def test_text_without_personal_data_is_unchanged() -> None:
    masked = mask(["Where is order A-1042?"])

    assert masked.texts == ("Where is order A-1042?",)
    assert masked.kinds == ()
    assert masked.restore("Order A-1042 ships today.") == "Order A-1042 ships today."


def test_a_stream_with_nothing_to_restore_passes_each_chunk_as_it_comes() -> None:
    restorer = mask(["Where is order A-1042?"]).restorer()

    shown = [restorer.feed(chunk) for chunk in ["It ships [", "EMAIL_1] today"]]

    assert shown == ["It ships [", "EMAIL_1] today"]  # a placeholder the LLM made up stays
    assert restorer.flush() == ""


def test_a_stream_restores_placeholders_cut_across_chunks() -> None:
    masked = mask([MESSAGE])
    restorer = masked.restorer()

    chunks = ["We wrote to [EM", "AIL_", "1] and [", "will call [PHONE_1]", " soon [x] ["]
    shown = [restorer.feed(chunk) for chunk in chunks]

    assert shown == ["We wrote to ", "", "ada@example.com and ", "[will call +44 20 7946 0958", " soon [x] "]
    assert restorer.flush() == "["
    assert "".join(shown) + "[" == masked.restore("".join(chunks))


def test_national_ids_get_placeholders_of_their_kind_restored_in_a_stream() -> None:
    masked = mask(["SSN 123-45-6789, NI AB123456C, Steuer-ID 12345678995, NIR 1 84 12 76 451 089 46"])

    assert masked.texts == ("SSN [SSN_1], NI [NINO_1], Steuer-ID [TAX_ID_1], NIR [NIR_1]",)
    restorer = masked.restorer()
    shown = [restorer.feed(chunk) for chunk in ["Your id [TAX", "_I", "D_1] and [NI", "R_1]."]]
    assert "".join(shown) + restorer.flush() == "Your id 12345678995 and 1 84 12 76 451 089 46."
    assert shown[:2] == ["Your id ", ""]  # `[TAX_I` may still become a placeholder: held back


def test_the_profile_and_the_metadata_share_the_conversations_placeholders() -> None:
    asked = CustomerMessage(
        message_id="m-1",
        conversation_id="c-1",
        text="Mail me at ada@example.com",
        metadata={"callback": {"phone": 4155552671, "ok": True}, "tags": ["vip", "ada@example.com"]},
    )
    history = [HistoryTurn(role="customer", text="my card 4111 1111 1111 1111", message_id="m-0", at="t")]
    profile = {"name": "Ada", "notes": "prefers ada@example.com; SSN 123-45-6789"}

    masked = mask(prompt_texts(asked, history, profile))
    message, turns, customer = masked.prompt_parts(asked, history, profile)

    assert message.text == "Mail me at [EMAIL_1]"
    assert message.metadata == {"callback": {"phone": "[PHONE_1]", "ok": True}, "tags": ["vip", "[EMAIL_1]"]}
    assert turns[0].text == "my card [CARD_1]"
    assert customer == {"name": "Ada", "notes": "prefers [EMAIL_1]; SSN [SSN_1]"}
    assert masked.restore("[EMAIL_1] [SSN_1] [PHONE_1]") == "ada@example.com 123-45-6789 4155552671"


def test_a_prompt_without_personal_data_is_not_copied() -> None:
    asked = CustomerMessage(message_id="m-1", conversation_id="c-1", text="Hi", metadata={"tags": ["a"]})
    profile = {"name": "Ada", "tier": "gold"}

    message, turns, customer = mask(prompt_texts(asked, [], profile)).prompt_parts(asked, [], profile)

    assert (message, turns, customer) == (asked, [], profile)
    assert message is asked
    assert customer is profile


def test_the_locales_plain_national_numbers_are_masked_in_every_text() -> None:
    texts = ["el 912345678 o el 612 34 56 78", "mi fijo: 912345678"]

    assert mask(texts, "es-ES").texts == ("el [PHONE_1] o el [PHONE_2]", "mi fijo: [PHONE_1]")
    assert mask(texts, "de-DE").texts == ("el 912345678 o el [PHONE_1]", "mi fijo: 912345678")
    assert mask(texts).texts == mask(texts, "es").texts  # no region: the shapes known everywhere


def test_more_text_shares_the_conversation_s_placeholders_and_adds_new_ones_restored_too() -> None:
    masked = mask([MESSAGE])
    restorer = masked.restorer()  # made before: it restores the added values all the same

    added = masked.add("Order for ADA@example.com, billed to b@example.com; [EMAIL_3] is text.")

    assert added == "Order for [EMAIL_1], billed to [EMAIL_2]; [EMAIL_3] is text."
    assert masked.originals["[EMAIL_2]"] == "b@example.com"
    assert "[EMAIL_3]" not in masked.originals
    assert restorer.feed("We wrote to [EMAIL_2] ") == "We wrote to b@example.com "
    assert masked.add("nothing personal") == "nothing personal"


def test_restore_json_escapes_the_originals_as_json_string_content() -> None:
    masked = mask(['say "hi" to a@example.com'])
    masked.originals["[EMAIL_1]"] = 'odd"one@example.com'

    assert json.loads(masked.restore_json('{"to": "[EMAIL_1]"}')) == {"to": 'odd"one@example.com'}


async def test_masked_tools_restore_the_arguments_and_mask_the_result() -> None:
    class Orders:
        def __init__(self) -> None:
            self.calls: list[ToolCall] = []

        def declarations(self) -> list[dict[str, Any]]:
            return [{"type": "function", "function": {"name": "orders_of"}}]

        async def run(self, call: ToolCall) -> ToolResult:
            self.calls.append(call)
            return ToolResult('{"email": "ada@example.com", "phone": "+44 20 7946 0999"}', ok=True)

    masked, orders = mask([MESSAGE]), Orders()
    tools = MaskedTools(orders, masked, "en")

    result = await tools.run(ToolCall("call_1", "orders_of", '{"email": "[EMAIL_1]"}'))

    assert orders.calls[0].arguments == '{"email": "ada@example.com"}'
    assert result == ToolResult('{"email": "[EMAIL_1]", "phone": "[PHONE_2]"}', ok=True)
    assert masked.restore(result.content) == '{"email": "ada@example.com", "phone": "+44 20 7946 0999"}'
    assert tools.declarations() == orders.declarations()
