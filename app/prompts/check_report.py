"""What `enricher prompts check` reports besides load problems: token counts, the budget, the intents,
the handoff rules."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from app.errors import TemplateError
from app.prompts.file_format import Sample
from app.prompts.handoff_rules import HandoffRules
from app.prompts.library import PromptLibrary, PromptTemplate
from app.schemas import utc_now
from app.signals.intent import check_intents
from app.tokens import count_chat


def sample_tokens(
    library: PromptLibrary, samples: Mapping[Path, Sample], model: str
) -> dict[PromptTemplate, dict[str, int]]:
    """Prompt tokens of each template rendered with each sample, by sample file name."""
    now = utc_now()

    def tokens(template: PromptTemplate, sample: Sample) -> int:
        rendered = library.render(
            template, message=sample.message, customer=sample.customer, history=sample.history, now=now
        )
        return count_chat(rendered.messages, model)

    return {t: {path.name: tokens(t, sample) for path, sample in samples.items()} for t in library.templates}


def over_budget(counts: Mapping[PromptTemplate, Mapping[str, int]], max_tokens: int) -> list[TemplateError]:
    """A problem for each template and sample that renders to more than `max_tokens`."""
    return [
        TemplateError(
            f"renders to {tokens} tokens with sample {sample}, over the budget of {max_tokens}",
            f"{template.path}:1",
        )
        for template, by_sample in counts.items()
        for sample, tokens in by_sample.items()
        if tokens > max_tokens
    ]


def template_line(template: PromptTemplate, tokens: Mapping[str, int]) -> str:
    """The line printed for a template: file, label, version and its token count with each sample."""
    counts = "".join(f"; {sample}: {count} tokens" for sample, count in tokens.items())
    return f"{template.path}: {template.label} version {template.version}{counts}"


def intents_report(path: Path) -> tuple[list[str], list[TemplateError]]:
    """The lines to print about the intents file (a summary, then each overlap as a warning), and its
    problems, to report with the templates'. A directory without the file has nothing to check."""
    if not path.exists():
        return [], []
    intents, problems, overlaps = check_intents(path)
    # A version as the templates have, so an editor sees which file the worker will load.
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    summary = (
        f"{path}: intents version {version}; {len(intents.names)} intents, {len(intents.examples)} examples"
    )
    return [summary, *(f"{overlap.location}: warning: {overlap.reason}" for overlap in overlaps)], problems


def handoff_report(path: Path, rules: HandoffRules) -> list[str]:
    """The lines to print about the handoff rules file: a summary, then each rule that is right, at its
    line. (Its problems are the loader's.)"""
    if not path.exists():
        return [f"{path}: no such file, so no conversation is handed to a human"]
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    summary = f"{path}: handoff rules version {version}; {len(rules.rules)} rules"
    return [summary, *(f"{path}:{rule.line}: {rule.describe()}" for rule in rules.rules)]
