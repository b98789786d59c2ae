"""Id shapes read from the conversation's own ids, and the foreign ids they find."""

from __future__ import annotations

import pytest

from app.guard import foreign_id, id_shape, shaped_ids

UUID_ID = "5f0c2a9e-8d41-4c7b-b2a3-9e61f0d4c8aa"
OWN = {"conversation id": "conv-123", "customer id": "cust-7"}


@pytest.mark.parametrize(
    ("own", "other"),
    [
        ("conv-123", "conv-9"),
        ("conv-123", "CONV-124"),
        ("cust-7", "cust-a9f3"),
        ("cust_a9f3", "cust_12"),
        ("conv-2024-0001", "conv-2024-0002"),
        ("conv-live-1", "conv-test-2"),
        (UUID_ID, "0b9e1c44-7a2d-4f16-8c3e-5d7a9b1e2f30"),
    ],
)
def test_an_id_of_the_own_ids_shape_is_found(own: str, other: str) -> None:
    shape = id_shape(own)
    assert shape is not None
    assert [m.group() for m in shape.finditer(f"See ({other}), please.")] == [other]
    assert [m.group() for m in shape.finditer(f"{own}.")] == [own]


@pytest.mark.parametrize("own", ["c-1", "12345", "alice", "conv-abc", "c2c-12", "x" * 20 + "-1"])
def test_an_id_without_a_recognisable_shape_finds_nothing(own: str) -> None:
    assert id_shape(own) is None


@pytest.mark.parametrize(
    "text", ["our conv-ersation", "cust-service", "reconv-12", "order A-1042", "CUST7", "cust-", "xcust-8"]
)
def test_words_and_other_numbers_are_no_ids(text: str) -> None:
    assert foreign_id(text, OWN, frozenset()) is None


def test_the_own_ids_in_any_case_are_not_foreign() -> None:
    assert foreign_id("Conversation CONV-123 of customer Cust-7.", OWN, frozenset()) is None


def test_the_first_foreign_id_is_named_with_its_label() -> None:
    answer = "cust-7: your ticket conv-123 is linked to cust-8 and conv-77."
    assert foreign_id(answer, OWN, frozenset()) == ("conversation id", "conv-77")
    assert foreign_id("cust-7 and cust-8", OWN, frozenset()) == ("customer id", "cust-8")


def test_ids_the_customer_wrote_are_not_foreign() -> None:
    mentioned = shaped_ids(["my other ticket is CONV-77", "hi"], OWN.values())
    assert mentioned == {"conv-77"}
    assert foreign_id("About conv-77: done.", OWN, mentioned) is None
    assert foreign_id("About conv-78: done.", OWN, mentioned) == ("conversation id", "conv-78")


def test_no_customer_id_means_only_the_conversation_shape() -> None:
    assert foreign_id("cust-8", {"conversation id": "conv-1", "customer id": None}, frozenset()) is None
