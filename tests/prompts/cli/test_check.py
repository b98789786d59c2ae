"""`enricher prompts check`: the shipped set passes with its token counts, each broken file is reported
at its line in plain words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.prompt_commands import HEADER, USER, run
from tests.helpers.template_cases import UNBOUNDED, UNBOUNDED_REASONS
from tests.helpers.workers import PROMPTS


def test_shipped_templates_pass_with_token_counts() -> None:
    result = run("check", str(PROMPTS))

    assert result.exit_code == 0, result.output
    for name in (
        "fallback.j2",
        "handoff.j2",
        "support_reply.j2",
        "support_reply_complaint.j2",
        "support_reply_gold.j2",
    ):
        assert re.search(
            rf"{name}: .* version [0-9a-f]{{12}}; returning_customer.yaml: \d+ tokens", result.output
        )
    assert result.output.rstrip().endswith("5 templates, no problems")


def test_default_directory_is_prompts_here(prompts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(prompts.parent)

    assert run("check").exit_code == 0


BROKEN = {
    "syntax error": (
        HEADER + "{% block system %}\n{% if %}\n{% endblock %}\n" + USER,
        "{% if %}",
        "Expected an expression",
    ),
    "unknown variable": (
        HEADER + "{% block system %}\nHi {{ customer_name }}\n{% endblock %}\n" + USER,
        "customer_name",
        "unknown variable `customer_name`",
    ),
    "missing front matter field": (
        HEADER.replace("description: A test template.\n", "")
        + "{% block system %}\nHi\n{% endblock %}\n"
        + USER,
        "---",
        "front matter field `description` is required",
    ),
    "sandbox escape": (
        HEADER
        + "{% block system %}\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n{% endblock %}\n"
        + USER,
        "__class__",
        "names starting with '_' are not allowed",
    ),
    "sandbox escape at render time": (
        HEADER + "{% block system %}\n{{ customer|attr('__class__') }}\n{% endblock %}\n" + USER,
        "attr(",
        "access to attribute '__class__' of 'dict' object is unsafe",
    ),
    "customer text in the system part": (
        HEADER + "{% block system %}\nSay: {{ message.text }}\n{% endblock %}\n" + USER,
        "Say:",
        "`message.text` is customer text and cannot be used in the system part",
    ),
} | {
    case: (
        HEADER + f"{{% block system %}}\nWork: {code}\n{{% endblock %}}\n" + USER,
        "Work:",
        UNBOUNDED_REASONS[case],
    )
    for case, code in UNBOUNDED.items()
}


@pytest.mark.parametrize(("body", "line_with", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_each_broken_template_is_reported_at_its_line(
    prompts: Path, body: str, line_with: str, message: str
) -> None:
    path = prompts / "support_reply_email.j2"
    path.write_text(body, encoding="utf-8")
    line = next(n for n, text in enumerate(body.split("\n"), 1) if line_with in text)

    result = run("check", str(prompts))

    assert result.exit_code == 1
    assert re.search(rf"^{re.escape(str(path))}:{line}: .*{re.escape(message)}", result.output, re.MULTILINE)


def test_a_template_over_the_token_budget_is_an_error(prompts: Path) -> None:
    text = (prompts / "support_reply_gold.j2").read_text(encoding="utf-8")
    padded = text.replace("Customer profile:", "Remember our policies. " * 2000 + "\nCustomer profile:")
    (prompts / "support_reply_gold.j2").write_text(padded, encoding="utf-8")

    result = run("check", str(prompts))

    assert result.exit_code == 1
    pattern = (
        rf"^{re.escape(str(prompts / 'support_reply_gold.j2'))}:1: renders to \d+ tokens .* budget of 6000"
    )
    assert re.search(pattern, result.output, re.MULTILINE)
    assert run("check", str(prompts), "--max-tokens", "100000").exit_code == 0
    assert run("check", str(prompts), env={"ENRICHER_MAX_PROMPT_TOKENS": "100000"}).exit_code == 0


def test_a_broken_default_file_is_the_only_problem_reported(prompts: Path) -> None:
    path = prompts / "support_reply.j2"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("{% endfor %}\n{% endblock %}", "{% endblock %}"), encoding="utf-8")
    opened = next(n for n, line in enumerate(text.split("\n"), 1) if line.startswith("{% for"))
    closed = next(n for n, line in enumerate(text.split("\n"), 1) if line.startswith("{% endfor"))

    result = run("check", str(prompts))

    assert result.exit_code == 1
    listed = (" version ", ": rule '")  # the lines of templates and handoff rules that load
    problems = [
        line for line in result.output.splitlines() if ": " in line and not any(x in line for x in listed)
    ]
    assert problems == [
        f"{path}:{closed}: the {{% for %}} on line {opened} is not closed with {{% endfor %}}: "
        "add it where the text that depends on it ends (Jinja: unknown tag 'endblock')"
    ]
    assert "without `when:`" not in result.output
    assert result.output.rstrip().endswith("4 templates, 1 problem(s); token counts once all load")


def test_an_unguarded_name_is_explained_in_plain_words(prompts: Path) -> None:
    path = prompts / "support_reply.j2"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("Customer profile:", "Hi {{ customer.name }}!\nCustomer profile:"))
    line = next(n for n, text in enumerate(path.read_text().split("\n"), 1) if text.startswith("Hi {{"))

    result = run("check", str(prompts))

    assert result.exit_code == 1
    assert (
        f"{path}:{line}: `customer.name` may be missing for some customers: "
        "wrap it in {% if customer.name is defined %} … {% endif %} "
        "(rendering sample returning_customer.yaml with no profile, history or metadata)\n"
    ) in result.output
    assert "dict object" not in result.output


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    result = run("check", str(tmp_path / "nowhere"))

    assert result.exit_code == 1
    assert "nowhere: not a directory" in result.output
