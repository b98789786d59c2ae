"""The shipped sample that carries help-center passages: a template's `{% if knowledge %}` part is
trial-rendered on load, and the mock LLM answers from the passage the shipped template gives it."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.prompts.file_format import read_samples
from app.prompts.library import PromptLibrary
from devstack.mock_llm.chat import compose_reply
from tests.helpers.template_cases import GOOD_SYSTEM, NOW, line_of, load_error, write
from tests.helpers.workers import PROMPTS

SAMPLE = "returns_question.yaml"
BROKEN_PASSAGES = (
    "{% block user %}\n{% if knowledge %}\n{{ knowledge[0].heading }}\n{% endif %}\n"
    "<customer_message>{{ message.text }}</customer_message>\n{% endblock %}\n"
)


def test_a_mistake_in_the_knowledge_part_is_found_on_load(tmp_path: Path) -> None:
    prompts = Path(shutil.copytree(PROMPTS, tmp_path / "prompts"))
    path = write(prompts, "support_reply_es.j2", GOOD_SYSTEM + BROKEN_PASSAGES, extra="when: {locale: es}\n")

    error = load_error(prompts)

    assert error.location == f"{path}:{line_of(path, 'knowledge[0].heading')}"
    assert SAMPLE in error.reason


def test_the_mock_answers_from_the_passage_the_shipped_template_carries() -> None:
    library = PromptLibrary.load(PROMPTS)
    sample = read_samples(PROMPTS)[PROMPTS / "samples" / SAMPLE]
    template = library.select(sample.message, sample.customer)
    knowledge = sample.passages()

    rendered = library.render(
        template, message=sample.message, customer=sample.customer, history=[], now=NOW, knowledge=knowledge
    )
    answer = compose_reply(rendered.messages)

    assert 'From our help-center ("Our returns policy"): After the 30-day window' in answer
    assert "no longer accept a return for a change of mind." in answer
    without = library.render(template, message=sample.message, customer=sample.customer, history=[], now=NOW)
    assert "help-center" not in compose_reply(without.messages)


def test_every_shipped_reply_template_gives_the_llm_the_orders_and_the_passages() -> None:
    library = PromptLibrary.load(PROMPTS)
    samples = read_samples(PROMPTS)
    sample, orders = (
        samples[PROMPTS / "samples" / SAMPLE],
        samples[PROMPTS / "samples" / "returning_customer.yaml"].orders,
    )
    listed = orders[0]
    replies = [template for template in library.templates if template.kind == "reply"]

    assert len(replies) >= 3
    for template in replies:
        rendered = library.render(
            template,
            message=sample.message,
            customer=sample.customer,
            history=[],
            now=NOW,
            orders=orders,
            knowledge=sample.passages(),
        )
        user = rendered.messages[-1]["content"]
        assert f"- {listed.order_id}: {listed.status}" in user, template.path.name
        assert '<article id="' in user, template.path.name
