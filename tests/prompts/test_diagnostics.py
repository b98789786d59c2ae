"""Template diagnostics: problems found in a template's syntax tree, and Jinja's errors in plain words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.template_cases import GOOD_SYSTEM, GOOD_USER, line_of, load_error, write
from tests.helpers.workers import PROMPTS


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    """A copy of the shipped templates and samples to add broken or extra templates to."""
    return Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))


# Customer text in the system part and unknown names, in any branch


SYSTEM_PART_PROBLEMS = {
    "message text": ("Say: {{ message.text }}\n", "Say:", "`message.text` is customer text"),
    "history": (
        "{% for turn in history %}{{ turn.text }}{% endfor %}\n",
        "history",
        "`history` is customer text",
    ),
    "unknown variable in a branch samples skip": (
        "You help.\n{% if false %}{{ custmer.name }}{% endif %}\n",
        "custmer",
        "unknown variable `custmer`",
    ),
}


@pytest.mark.parametrize(
    ("system", "needle", "problem"), SYSTEM_PART_PROBLEMS.values(), ids=SYSTEM_PART_PROBLEMS.keys()
)
def test_a_problem_in_the_system_part_is_reported_at_its_line(
    prompts: Path, system: str, needle: str, problem: str
) -> None:
    body = "{% block system %}\n" + system + "{% endblock %}\n" + GOOD_USER
    path = write(prompts, "system.j2", body, extra="when: {channel: web}\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, needle)}"
    assert problem in error.reason


# Syntax, parts and private names


def test_syntax_error_names_file_and_line(prompts: Path) -> None:
    path = write(
        prompts, "broken.j2", "{% block system %}\nHi {{ customer..name }}\n{% endblock %}\n" + GOOD_USER
    )

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'Hi {{')}"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (GOOD_SYSTEM, "missing part {% block user %}"),
        (GOOD_SYSTEM + GOOD_USER + "Stray text\n", "text outside"),
        (GOOD_SYSTEM + GOOD_USER + "{% block extra %}x{% endblock %}\n", "unknown part"),
    ],
)
def test_template_parts_are_checked(prompts: Path, body: str, problem: str) -> None:
    write(prompts, "parts.j2", body, extra="when: {channel: web}\n")

    assert problem in load_error(prompts).reason


def test_escape_in_a_branch_samples_never_take_is_still_rejected(prompts: Path) -> None:
    body = (
        GOOD_SYSTEM
        + "{% block user %}\n{% if message.channel == 'fax' %}{{ ''.__class__ }}{% endif %}\n{% endblock %}\n"
    )
    write(prompts, "hidden.j2", body, extra="when: {channel: web}\n")

    assert "names starting with '_'" in load_error(prompts).reason


# A missing value is named, with the guard to add


def test_unguarded_profile_field_fails_for_customers_without_profile(prompts: Path) -> None:
    body = "{% block system %}\nHello {{ customer.name }}\n{% endblock %}\n" + GOOD_USER
    path = write(prompts, "unguarded.j2", body, extra="when: {channel: web}\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'Hello')}"
    assert error.reason.startswith(
        "`customer.name` may be missing for some customers: "
        "wrap it in {% if customer.name is defined %} … {% endif %}"
    )
    assert "no profile" in error.reason
    assert "dict object" not in error.reason


@pytest.mark.parametrize(
    ("expression", "hint"),
    [
        ('customer["plan"]', "`customer.plan` may be missing for some customers"),
        ("customer.name.upper()", "`customer.name` may be missing for some customers"),
        ("metadata.order_id", "`metadata.order_id` may be missing for some messages"),
        ("message.metadata.order_id", "`message.metadata.order_id` may be missing for some messages"),
        (
            "customer[field]",
            "`customer.tier` may be missing for some customers: "
            "wrap it in {% if customer.tier is defined %} … {% endif %}",
        ),
    ],
)
def test_missing_values_are_named_with_a_guard_to_add(prompts: Path, expression: str, hint: str) -> None:
    body = (
        "{% block system %}\n{% set field = 'tier' %}\nAbout: {{ "
        + expression
        + " }}\n{% endblock %}\n"
        + GOOD_USER
    )
    path = write(prompts, "unguarded.j2", body, extra="when: {channel: web}\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'About:')}"
    assert error.reason.startswith(hint)


def test_a_missing_value_that_cannot_be_named_gets_a_general_hint(prompts: Path) -> None:
    body = GOOD_SYSTEM + "{% block user %}\nBefore: {{ history[0].text }}\n{% endblock %}\n"
    path = write(prompts, "first.j2", body, extra="when: {channel: web}\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'Before:')}"
    assert error.reason.startswith("a value on this line is missing (list object has no element 0)")
    assert "{% if ... is defined %}" in error.reason


# Unclosed and stray tags


UNCLOSED = {
    "if before endblock": (
        "{% block system %}\nHi\n{% if customer.name is defined %}\n{{ customer.name }}\n{% endblock %}\n",
        "{% if",
        "{% endblock",
        "the {% if %} on line {opened} is not closed with {% endif %}",
    ),
    "for before endblock": (
        "{% block system %}\n{% for f in ['a'] %}\n{{ f }}\n{% endblock %}\n",
        "{% for",
        "{% endblock",
        "the {% for %} on line {opened} is not closed with {% endfor %}",
    ),
    "if inside for": (
        "{% block system %}\n{% for f in ['a'] %}\n{% if f %}\nx\n{% endfor %}\n{% endblock %}\n",
        "{% if",
        "{% endfor",
        "the {% if %} on line {opened} is not closed with {% endif %}",
    ),
    "stray endif": (
        "{% block system %}\nHi\n{% endif %}\n{% endblock %}\n",
        "{% endif",
        "{% endif",
        "this {% endif %} has no {% if %} to belong to",
    ),
    "misspelt tag": (
        "{% block system %}\n{% iff true %}\n{% endblock %}\n",
        "{% iff",
        "{% iff",
        "unknown instruction {% iff %}: check the spelling",
    ),
}


@pytest.mark.parametrize(("system", "opening", "noticed", "hint"), UNCLOSED.values(), ids=UNCLOSED.keys())
def test_unclosed_and_stray_tags_are_explained_at_their_line(
    prompts: Path, system: str, opening: str, noticed: str, hint: str
) -> None:
    path = write(prompts, "tags.j2", system + GOOD_USER, extra="when: {channel: web}\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, noticed)}"
    assert error.reason.startswith(hint.replace("{opened}", str(line_of(path, opening))))
    assert "innermost block" not in error.reason


def test_an_if_left_open_at_the_end_of_the_file_is_explained(prompts: Path) -> None:
    path = write(
        prompts, "open.j2", GOOD_SYSTEM + GOOD_USER + "{% if true %}\n", extra="when: {channel: web}\n"
    )

    error = load_error(prompts)

    opened = line_of(path, "{% if true")
    assert error.reason.startswith(f"the {{% if %}} on line {opened} is not closed with {{% endif %}}")
