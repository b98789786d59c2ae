"""What the studio shows of a template directory: each template with its conditions and token
counts, the problems `enricher prompts check` reports, and a template rendered for one message."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import TemplateError
from app.prompts.check_report import intents_report, over_budget, sample_tokens
from app.prompts.file_format import Sample, read_samples, read_text
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary, PromptTemplate, RenderedPrompt
from app.prompts.loading import load_directory
from app.prompts.studio.draft import Problem
from app.schemas import CustomerMessage, HistoryTurn, utc_now
from app.signals.pii import mask, prompt_texts
from app.tokens import ChatMessage, count_chat, count_text

Passages = Sequence[Mapping[str, str | float]]
"""A message's help-center passages as the template variable `knowledge` holds them, best first."""


@dataclass(frozen=True)
class Catalog:
    """A directory's templates that load, with their text and token counts, and every problem."""

    library: PromptLibrary
    samples: Mapping[Path, Sample]
    tokens: Mapping[PromptTemplate, Mapping[str, int]]
    problems: Sequence[Problem]

    @classmethod
    def load(cls, directory: Path, model: str, max_tokens: int) -> Catalog:
        """Load and check `directory` as `enricher prompts check` does; the templates that load are
        counted even when another file is broken, so their counts show while it is fixed."""
        loaded = load_directory(directory)
        library, errors = PromptLibrary(loaded.entries, loaded.handoff_rules), loaded.problems
        samples = read_samples(directory) if loaded.entries else {}  # loading refused them otherwise
        tokens = sample_tokens(library, samples, model)
        errors += over_budget(tokens, max_tokens) + intents_report(directory / INTENTS_FILE)[1]
        return cls(library, samples, tokens, [Problem.of(error) for error in errors])

    def file(self, name: str) -> PromptTemplate | None:
        """The template loaded from the file `name` (`support_reply.j2`)."""
        return next((t for t in self.library.templates if t.path.name == name), None)

    def summary(self) -> dict[str, Any]:
        """The JSON of `GET /api/studio/templates`."""
        return {
            "templates": [_template_json(t, self.tokens.get(t, {})) for t in self.library.templates],
            "problems": [vars(problem) for problem in self.problems],
            "sample": next(iter(self.samples.values())).message.text if self.samples else "",
        }


def _template_json(template: PromptTemplate, tokens: Mapping[str, int]) -> dict[str, Any]:
    return {
        "file": template.path.name,
        "name": template.name,
        "label": template.label,
        "description": template.description,
        "kind": template.kind,
        "variant": template.variant,
        "weight": template.weight,
        "version": template.version,
        "conditions": template.conditions.model_dump(exclude_none=True),
        "model": {"temperature": template.temperature, "max_tokens": template.max_tokens},
        "tokens": dict(tokens),
        "source": read_text(template.path),
    }


def message_for(
    sample: Sample, template: PromptTemplate, text: str, customer_id: str | None
) -> CustomerMessage:
    """The first sample's message with `text` from `customer_id`, on the channel and locale the
    template's `when:` asks for (as `enricher prompts render FILE` shows a file); ValidationError
    when the text is not a valid message."""
    conditions = template.conditions
    updates = {
        "text": text,
        "customer_id": customer_id,
        "channel": conditions.channel,
        "locale": conditions.locale,
    }
    document = sample.message.model_dump() | {
        key: value for key, value in updates.items() if value is not None
    }
    return CustomerMessage.model_validate(document)


def render_for(
    library: PromptLibrary,
    template: PromptTemplate,
    message: CustomerMessage,
    customer: Mapping[str, str],
    history: Sequence[HistoryTurn],
    knowledge: Passages = (),
) -> RenderedPrompt:
    """`template` rendered for the message as the worker renders it, personal data in the message,
    its metadata, the history and the profile as placeholders, with the help-center's passages for
    it; TemplateError with file:line when it fails."""
    texts = prompt_texts(message, history, customer)
    asked, turns, profile = mask(texts, message.locale).prompt_parts(message, history, customer)
    return library.render(
        template, message=asked, customer=profile, history=turns, now=utc_now(), knowledge=knowledge
    )


def prompts_for(
    library: PromptLibrary,
    template: PromptTemplate,
    messages: Sequence[CustomerMessage],
    customers: Sequence[Mapping[str, str]],
    knowledge: Sequence[Passages],
    word: Callable[[TemplateError], TemplateError] = lambda error: error,
) -> list[list[ChatMessage] | str]:
    """Each message's prompt as `customers[i]` writes `messages[i]` (no history: a try shows the
    same to both sides), with `knowledge[i]`'s passages, or the error, as `word` puts it, that
    stopped it rendering."""
    prompts: list[list[ChatMessage] | str] = []
    for message, customer, passages in zip(messages, customers, knowledge, strict=True):
        try:
            prompts.append(render_for(library, template, message, customer, (), passages).messages)
        except TemplateError as error:
            prompts.append(str(word(error)))
    return prompts


def rendered_json(rendered: RenderedPrompt, model: str) -> dict[str, Any]:
    """The chat messages as they would go to the LLM, each with its tokens, and the prompt's total.

    The message, the history and the profile are masked already (`render_for`), as they go to
    the LLM.
    """
    return {
        "messages": [
            {"role": m["role"], "content": m["content"], "tokens": count_text(m["content"], model)}
            for m in rendered.messages
        ],
        "prompt_tokens": count_chat(rendered.messages, model),
        "to_llm": not rendered.template.sent_as_is,
        "masked": True,
    }


def worker_choice(library: PromptLibrary, message: CustomerMessage, customer: Mapping[str, str]) -> str:
    """The file the worker answers this message with (its reply template)."""
    return library.select(message, customer).path.name
