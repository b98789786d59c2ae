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
from app.signals.models import check_intents
from app.tokens import count_chat


def sample_tokens(
    library: PromptLibrary, samples: Mapping[Path, Sample], model: str
) -> dict[PromptTemplate, dict[str, int]]:
    """Prompt tokens of each template rendered with each sample, by sample file name."""
    now = utc_now()

    def tokens(template: PromptTemplate, sample: Sample) -> int:
        rendered = library.render(
            template,
            message=sample.message,
            customer=sample.customer,
            history=sample.history,
            now=now,
            orders=sample.orders,
            knowledge=sample.passages(),
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


# Messages that have the words of a request for a person but ask for none: a phrase that hands one
# of them over is warned of. Built in rather than a file beside handoff.yaml, so that the check
# cannot be emptied by an edit; bench/data/handoff_messages.yaml holds more, for measuring.
NEAR_MISSES = (
    "Is this a real person?",
    "Am I talking to a human or a bot?",
    "My human resources department needs the invoice",
    "Human error on my invoice",
    "The agent who delivered my parcel was rude",
    "Your agent in the shop said I could return it",
    "My manager needs a copy of the invoice",
    "The delivery person left it at the door",
    "Is the price per person?",
    "I will speak to my bank about the charge",
    "I don't need to talk to a person, just tell me the status",
    "Ist das ein echter Mensch?",
    "Die Personalabteilung braucht die Rechnung",
    "Der Mitarbeiter im Laden war sehr nett",
    "Est-ce une vraie personne ?",
    "Le service des ressources humaines a besoin de la facture",
    "Le conseiller en magasin m'a dit de vous écrire",
    "¿Eres una persona real?",
    "Recursos humanos necesita la factura",
    "El agente de la tienda me dijo que escribiera aquí",
)


def handoff_report(path: Path, rules: HandoffRules) -> list[str]:
    """The lines to print about the handoff rules file: a summary, each rule that is right, at its
    line, then a warning for each phrase that would hand over one of the NEAR_MISSES. (Its problems
    are the loader's.)"""
    if not path.exists():
        return [f"{path}: no such file, so no conversation is handed to a human"]
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    summary = f"{path}: handoff rules version {version}; {len(rules.rules)} rules"
    warnings = [
        f'{path}:{phrase.line}: warning: the phrase "{phrase.text}" would hand over "{near_miss}", '
        "which asks for no person: make it longer"
        for rule in rules.rules
        if rule.phrases is not None
        for near_miss in NEAR_MISSES
        if (phrase := rule.phrases.find(near_miss)) is not None
    ]
    return [summary, *(f"{path}:{rule.line}: {rule.describe()}" for rule in rules.rules), *warnings]
