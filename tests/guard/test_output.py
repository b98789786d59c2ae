"""The output guard as the pipeline calls it: real templates, the mock LLM's answers, crafted leaks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.guard import PASSED, GuardContext, OutputGuard
from app.schemas import CustomerMessage, ErrorInfo, HistoryTurn
from bench.guard_answers import LIBRARY, NOW, conversations, natural_answers

GUARD = OutputGuard(["help@shop.example", "@staff.shop.example"])
ADA = next(
    c for c in conversations() if c.customer.get("name") == "Ada" and c.message.customer_id == "cust-1"
)
SECRETS = {
    "an API key (sk-...)": "sk-proj-Zx81aQ0pLm3Rt7Yw",
    "a password in a URL": "https://admin:hunter2-Secret@db.internal/x",
    "a bearer token": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc",
}


BASE = GuardContext(
    system_text="You help customers of Shop.",
    conversation_id="conv-123",
    customer_id="cust-7",
    customer_texts=("I am ada@example.com",),
)


def test_the_mock_llm_and_natural_replies_pass() -> None:
    answers = natural_answers()
    assert len({conversation.prompt.template.path.name for _, conversation in answers}) == 2
    blocked = [(answer, GUARD.check(answer, c.context).detail) for answer, c in answers]
    assert [pair for pair in blocked if pair[1]] == []


def test_a_repeated_system_prompt_is_blocked_without_quoting_it() -> None:
    leak = f"Sure! My instructions are:\n{ADA.context.system_text}"
    verdict = GUARD.check(leak, ADA.context)
    assert verdict.check == "system_prompt"
    assert verdict.blocked
    assert verdict.detail.startswith("system_prompt: the answer repeats ")
    assert "friendly" not in verdict.detail


@pytest.mark.parametrize(("shape", "secret"), SECRETS.items())
def test_a_key_shaped_secret_is_blocked_without_its_value(shape: str, secret: str) -> None:
    verdict = GUARD.check(f"Hi Ada, here you go: {secret} (keep it safe)", ADA.context)
    assert (verdict.check, verdict.detail) == ("secret", f"secret: the answer holds text shaped like {shape}")
    assert not any(piece in verdict.detail for piece in ("Zx81aQ0", "hunter2", "eyJhbG"))


def test_another_conversation_or_customer_id_is_blocked() -> None:
    verdict = GUARD.check("Your ticket conv-123 was merged into conv-124.", BASE)
    assert (verdict.check, verdict.detail) == (
        "foreign_id",
        "foreign_id: the answer names another conversation id",
    )
    assert GUARD.check("cust-7, see also account cust-8", BASE).check == "foreign_id"


def test_the_own_ids_and_those_the_customer_wrote_pass() -> None:
    own = replace(BASE, customer_texts=("Is this linked to my CONV-77?",))
    assert GUARD.check("Hi! Conversation conv-123 of cust-7, linked to your conv-77.", own) is PASSED


def test_another_customers_address_is_blocked_without_naming_it() -> None:
    verdict = GUARD.check("I have sent it to Grace.Hopper@Navy.example as well.", BASE)
    assert (verdict.check, verdict.detail) == (
        "foreign_email",
        "foreign_email: the answer gives an e-mail address that is not the customer's",
    )


@pytest.mark.parametrize(
    "answer",
    [
        "We wrote to ADA@example.com.",  # the customer's own, in any case
        "We wrote to [EMAIL_1].",  # a placeholder, restored later
        "Write to help@shop.example or billing@staff.shop.example.",  # the allow-list
        "Write to orders@shop.example.",  # given by the system part
    ],
)
def test_addresses_that_are_no_one_elses_pass(answer: str) -> None:
    system = "You help customers of Shop. Orders: orders@shop.example."
    assert GUARD.check(answer, replace(BASE, system_text=system)) is PASSED


def test_what_this_reply_s_tools_returned_passes_and_nothing_else_does() -> None:
    told: list[str] = []
    context = replace(BASE, tool_results=told)
    answer = "Your parcel conv-900 is with FastParcel: write to dispatch@fastparcel.example."
    assert GUARD.check(answer, context).check == "foreign_id"  # checked before the tools answered

    # Read anew at each check: the tools answer while the answer is made.
    told.append('{"shipment": "CONV-900", "courier": {"email": "Dispatch@FastParcel.example"}}')
    assert GUARD.check(answer, context) is PASSED
    assert GUARD.check("Ask for conv-901.", context).check == "foreign_id"
    assert GUARD.check("Or write to eve@fastparcel.example.", context).check == "foreign_email"


def test_a_guard_without_an_allow_list_blocks_the_company_address_the_prompt_does_not_give() -> None:
    assert OutputGuard().check("Write to help@shop.example.", BASE).check == "foreign_email"


def test_the_first_check_in_order_decides() -> None:
    answer = f"{SECRETS['an API key (sk-...)']} for cust-8 at bob@other.example"
    assert GUARD.check(answer, BASE).check == "secret"
    assert GUARD.check("cust-8 at bob@other.example", BASE).check == "foreign_id"


def test_the_context_of_a_message_holds_what_the_customer_gave_and_the_system_part() -> None:
    message = CustomerMessage.model_validate(
        {
            "message_id": "m-9",
            "conversation_id": "conv-123",
            "customer_id": "cust-7",
            "text": "Send it to Me@Home.example please, as for CONV-99",
            "metadata": {"contact": {"email": "desk@work.example"}},
        }
    )
    customer = {"name": "Ada", "tier": "silver", "email": "ada@example.com"}
    history = [HistoryTurn(role="customer", text="old: ada@old.example, cust-7", message_id="m-1", at="t")]
    template = LIBRARY.select(message, customer)
    prompt = LIBRARY.render(template, message=message, customer=customer, history=history, now=NOW)
    told = ['{"tracking": "conv-500"}']
    built = GuardContext.for_message(prompt.messages, message, customer, history, told)
    assert built.tool_results is told
    assert built.known_ids() == {"conv-99", "cust-7", "conv-500"}
    assert built.system_text == prompt.messages[0]["content"]
    assert "Send it to" not in built.system_text
    assert (built.conversation_id, built.customer_id) == ("conv-123", "cust-7")
    assert built.own_emails == {"me@home.example", "desk@work.example", "ada@example.com", "ada@old.example"}
    assert built.mentioned_ids == {"conv-99", "cust-7"}


def test_a_verdict_makes_a_guard_blocked_dead_letter_naming_the_check() -> None:
    verdict = GUARD.check("see conv-124", BASE)
    assert ErrorInfo(kind="guard_blocked", detail=verdict.detail).detail.startswith("foreign_id: ")
