"""The mock LLM answers a question about "my order" from the orders the prompt lists."""

from __future__ import annotations

from app.tokens import ChatMessage
from devstack.mock_llm.chat import compose_reply

ORDERS = (
    "The customer's latest orders, newest first:\n"
    "- A-1042: shipped, placed 2026-12-05, sent with DHL\n"
    "- A-0977: delivered, placed 2026-12-01, sent with UPS\n\n"
)


def chat(user_part: str) -> list[ChatMessage]:
    return [
        {"role": "system", "content": "Customer profile:\n- name: Ada Lovelace"},
        {"role": "user", "content": user_part},
    ]


def asked(text: str, orders: str = ORDERS) -> str:
    return compose_reply(chat(f"{orders}<customer_message>\n{text}\n</customer_message>"))


def test_asked_about_their_order_the_mock_names_the_newest_with_its_status() -> None:
    reply = asked("Where is my order?")
    assert "Your latest order A-1042 is shipped, placed 2026-12-05, sent with DHL." in reply
    assert "A-0977" not in reply


def test_an_order_named_or_no_order_asked_about_or_none_listed_gets_no_order_line() -> None:
    assert "Your latest order" not in asked("Where is my order A-0977?")  # the tool's to look up
    assert "Your latest order" not in asked("Can I change my password?")
    assert "Your latest order" not in asked("Where is my order?", orders="")


def test_the_question_is_heard_in_the_demo_languages() -> None:
    assert "A-1042" in asked("Wo ist meine Bestellung?")
    assert "A-1042" in asked("Où est ma commande ?")
    assert "A-1042" in asked("¿Dónde está mi pedido?")
