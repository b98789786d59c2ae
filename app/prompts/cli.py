"""`enricher prompts check|render`: check a template directory, preview the chat messages a template makes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from app.errors import TemplateError, fail, settings_or_exit
from app.prompts.check_report import (
    handoff_report,
    intents_report,
    over_budget,
    sample_tokens,
    template_line,
)
from app.prompts.file_format import read_samples
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary, PromptTemplate
from app.prompts.loading import load_directory
from app.prompts.preview import (
    note_other_choice,
    preview_message,
    print_prompt,
    read_customer,
    read_history,
    send_to_llm,
    template_in_file,
    template_named,
)
from app.schemas import utc_now
from app.settings import Settings

prompts_cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Check and preview the prompt templates."
)

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
PROMPTS_DIR = Path("prompts")
Model = Annotated[str, typer.Option(envvar="ENRICHER_MODEL", help="Model whose tokenizer counts the tokens.")]


@prompts_cli.command()
def check(
    directory: Annotated[
        Path, typer.Argument(envvar="ENRICHER_PROMPTS_DIR", help="The template directory.")
    ] = PROMPTS_DIR,
    max_tokens: Annotated[
        int,
        typer.Option(
            envvar="ENRICHER_MAX_PROMPT_TOKENS",
            help="Token budget a template rendered with each sample must stay within.",
        ),
    ] = DEFAULTS["max_prompt_tokens"],
    model: Model = DEFAULTS["model"],
) -> None:
    """Load every template, the intents and the handoff rules, print versions, counts and rules, and
    report each problem as file:line.

    Exits 1 when any file is broken or a template renders over the token budget with a sample.
    """
    loaded = load_directory(directory)
    templates, problems = [entry.template for entry in loaded.entries], loaded.problems
    counts: dict[PromptTemplate, dict[str, int]] = {}
    if not problems:
        try:
            counts = sample_tokens(PromptLibrary.load(directory), read_samples(directory), model)
        except TemplateError as error:  # a file changed since the check
            problems.append(error)
    for template in templates:
        print(template_line(template, counts.get(template, {})))
    intent_lines, intent_problems = intents_report(directory / INTENTS_FILE)
    for line in [*intent_lines, *handoff_report(directory / RULES_FILE, loaded.handoff_rules)]:
        print(line)
    problems += over_budget(counts, max_tokens) + intent_problems
    for problem in problems:
        print(problem)
    verdict = f"{len(problems)} problem(s)" if problems else "no problems"
    print(f"{len(templates)} templates, {verdict}" + ("" if counts else "; token counts once all load"))
    raise typer.Exit(1 if problems else 0)


@prompts_cli.command()
def render(
    name: Annotated[
        str,
        typer.Argument(
            help="Template name, as in its `name:` line; or a file name (`support_reply_gold`, "
            "`support_reply_gold.j2`) to show that file."
        ),
    ],
    message: Annotated[str, typer.Option("--message", "-m", help="What the customer writes.")],
    customer: Annotated[
        str | None, typer.Option(help="Customer id: profile and orders from Redis (else the sample's).")
    ] = None,
    history: Annotated[
        Path | None, typer.Option(help="JSON or YAML list of {role, text} (else the sample's history).")
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Message locale (else the sample's).")] = None,
    channel: Annotated[str | None, typer.Option(help="Message channel (else the sample's).")] = None,
    tier: Annotated[str | None, typer.Option(help="Customer tier, replacing the profile's.")] = None,
    variant: Annotated[str | None, typer.Option(help="Variant to show (else the conversation's).")] = None,
    directory: Annotated[
        Path, typer.Option("--dir", envvar="ENRICHER_PROMPTS_DIR", help="The template directory.")
    ] = PROMPTS_DIR,
    model: Model = DEFAULTS["model"],
    redis_url: Annotated[
        str, typer.Option(envvar="REDIS_URL", help="Redis to read --customer from.")
    ] = DEFAULTS["redis_url"].get_secret_value(),
    send: Annotated[bool, typer.Option("--send", help="Also ask the configured LLM for a reply.")] = False,
) -> None:
    """Print the exact chat messages a template makes for a message, with token counts.

    The message and customer are the first sample's (prompts/samples/), with your text and options.

    NAME as in a `name:` line: you see the file the worker picks for this message and customer.

    NAME as a file name: you see that file, for the channel, locale and tier its `when:` asks for.
    """
    settings = settings_or_exit() if send else None
    try:
        library = PromptLibrary.load(directory)
        sample = next(iter(read_samples(directory).values()))
    except TemplateError as error:
        fail(f"{error}\n(run `enricher prompts check {directory}` for every problem)")
    file = (
        None if any(t.name == name for t in library.templates) else template_in_file(library, name, variant)
    )
    if file is not None:
        locale = locale or file.conditions.locale
        channel = channel or file.conditions.channel
        tier = tier or file.conditions.tier
    updates = {"text": message, "customer_id": customer, "locale": locale, "channel": channel}
    chat_message = preview_message(
        sample.message, {key: value for key, value in updates.items() if value is not None}
    )
    stored, orders = read_customer(customer, redis_url, sample)
    profile = stored | ({"tier": tier} if tier else {})
    turns = read_history(history) if history else sample.history
    if file is None:
        template = template_named(library, name, variant, chat_message, profile)
    else:
        template = file
        note_other_choice(library, file, chat_message, profile)
    try:
        rendered = library.render(
            template,
            message=chat_message,
            customer=profile,
            history=turns,
            now=utc_now(),
            orders=orders,
        )
    except TemplateError as error:
        fail(str(error))
    print_prompt(rendered, chat_message, profile, settings.model if settings else model)
    if settings is not None and not template.sent_as_is:
        asyncio.run(send_to_llm(settings, rendered))
