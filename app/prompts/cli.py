"""`enricher prompts check|render`: check a template directory, preview the chat messages a template makes.

`check` prints each template's version and token count with each sample, the intents and the
handoff rules, and every problem (a template over the token budget included; the studio reports
the same counts and problems). `render` shows one template's messages for a message and customer,
and `--send` asks the configured LLM for its reply. Input that cannot be used ends the command
through `app.errors.fail`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from app.errors import LLMError, TemplateError, fail, one_line, settings_or_exit
from app.prompts.file_format import Sample, read_samples, read_text
from app.prompts.handoff_rules import FILE_NAME as RULES_FILE
from app.prompts.handoff_rules import HandoffRules
from app.prompts.intents_file import FILE_NAME as INTENTS_FILE
from app.prompts.library import PromptLibrary, PromptTemplate, RenderedPrompt
from app.prompts.loading import load_directory
from app.schemas import CustomerMessage, HistoryTurn, Order, utc_now
from app.settings import Settings
from app.signals.models import check_intents
from app.tokens import count_chat, count_text

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


class HistoryEntry(BaseModel):
    """One turn of a `--history` file."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["customer", "agent"]
    text: str


def preview_message(sample: CustomerMessage, updates: Mapping[str, str]) -> CustomerMessage:
    """The sample's message with the user's fields; exit if they make it invalid."""
    try:
        return CustomerMessage.model_validate({**sample.model_dump(), **updates})
    except ValidationError as error:
        fail(f"invalid message: {one_line(error, first_only=True)}")


def read_customer(
    customer_id: str | None, redis_url: str, sample: Sample
) -> tuple[dict[str, str], list[Order]]:
    """The customer's profile and recent orders (newest first) from Redis, as the worker reads them;
    the sample's customer and orders without an id or when Redis does not answer."""
    # Imported when used, so a preview without --customer (and every other command) starts without redis.
    from app.context import ContextStore
    from app.redis_client import connect

    async def read(customer_id: str) -> tuple[dict[str, str], list[Order]] | None:
        # Like --redis-url, the cluster switch comes from the worker's environment.
        cluster = os.environ.get("ENRICHER_REDIS_CLUSTER") == "on"
        store = ContextStore(connect(redis_url, 2, cluster=cluster), history_turns=0, ttl_s=1)
        try:
            if not await store.ping():
                return None
            return await store.profile(customer_id), await store.orders(customer_id)
        finally:
            await store.aclose()

    if customer_id is None:
        return sample.customer, sample.orders
    found = asyncio.run(read(customer_id))
    if found is None:
        print("note: Redis does not answer; using the sample's customer and orders", file=sys.stderr)
        return sample.customer, sample.orders
    profile, orders = found
    if not profile:
        print(f"note: no profile `customer:{customer_id}` in Redis; using an empty one", file=sys.stderr)
    return profile, orders


def read_history(path: Path) -> list[HistoryTurn]:
    """The turns of a `--history` file (a JSON or YAML list of {role, text}); exit if it is unusable."""
    try:
        document = yaml.safe_load(read_text(path))
        entries = TypeAdapter(list[HistoryEntry]).validate_python(document)
    except (TemplateError, yaml.YAMLError) as error:
        fail(f"{path}: {error}")
    except ValidationError as error:
        first = error.errors()[0]
        loc = first["loc"]
        where = ", ".join([f"turn {int(loc[0]) + 1}", *map(str, loc[1:])]) + ": " if loc else ""
        fail(f"{path}: {where}{first['msg']}")
    return [
        HistoryTurn(role=entry.role, text=entry.text, message_id=f"history-{number}", at="")
        for number, entry in enumerate(entries, 1)
    ]


def template_in_file(library: PromptLibrary, name: str, variant: str | None) -> PromptTemplate:
    """The template in file `name` (`support_reply_gold` or `support_reply_gold.j2`); exit if none."""
    wanted = Path(name).name
    found = next((t for t in library.templates if wanted in (t.path.name, t.path.stem)), None)
    if found is None:
        names = ", ".join(sorted({t.label for t in library.templates}))
        files = ", ".join(sorted(t.path.name for t in library.templates))
        fail(f"no template {name!r}; there are {names} (or give a file name: {files})")
    if variant is not None and variant != found.variant:
        fail(f"{found.path.name} is variant {found.variant!r}, not {variant!r}")
    return found


def note_other_choice(
    library: PromptLibrary, file: PromptTemplate, message: CustomerMessage, customer: Mapping[str, str]
) -> None:
    """Say so when the worker would answer this message with another file than the one shown."""
    chosen = library.pick(file.kind, message, customer)
    if chosen.conditions != file.conditions:
        facts = _facts(message, customer)
        print(f"note: the worker answers a message with {facts} with {chosen.path.name}", file=sys.stderr)


def template_named(
    library: PromptLibrary,
    name: str,
    variant: str | None,
    message: CustomerMessage,
    customer: Mapping[str, str],
) -> PromptTemplate:
    """The template of that name (and variant) the worker would use for this message; exit if none."""
    named = [t for t in library.templates if t.name == name and variant in (None, t.variant)]
    if not named:
        known = ", ".join(sorted({t.label for t in library.templates}))
        fail(f"no template {name!r} with variant {variant!r}; there are {known}")
    chosen = library.pick(named[0].kind, message, customer)
    group = [t for t in named if t.conditions == chosen.conditions]
    if not group:
        wanted = "; ".join(f"{t.path.name}: {t.conditions.model_dump(exclude_none=True)}" for t in named)
        fail(f"a message with {_facts(message, customer)} gets {chosen.path.name}, not {name!r} ({wanted})")
    return chosen if chosen in group else group[0]


def _facts(message: CustomerMessage, customer: Mapping[str, str]) -> str:
    """What selection looks at, as the notes and errors name it."""
    return f"channel {message.channel}, locale {message.locale}, tier {customer.get('tier', '-')}"


def print_prompt(
    rendered: RenderedPrompt, message: CustomerMessage, customer: Mapping[str, str], model: str
) -> None:
    """Print the template's header and each chat message with its token count."""
    template = rendered.template
    print(f"{template.label} version {template.version} from {template.path}")
    print(f"for {_facts(message, customer)}", end="")
    settings = {"temperature": template.temperature, "max_tokens": template.max_tokens}
    print("".join(f", {key} {value}" for key, value in settings.items() if value is not None), end="\n\n")
    last = len(rendered.messages) - 1
    for number, chat in enumerate(rendered.messages):
        earlier = " (earlier in the conversation)" if 0 < number < last else ""
        tokens = count_text(chat["content"], model)
        print(f"=== {chat['role']}{earlier}: {tokens} tokens ===\n{chat['content']}\n")
    if template.sent_as_is:
        print(f"=== a {template.kind} goes to the customer as it is, without the LLM ===")
    else:
        print(f"=== {count_chat(rendered.messages, model)} prompt tokens in all for {model} ===")


async def send_to_llm(settings: Settings, rendered: RenderedPrompt) -> None:
    """Ask the configured LLM for a reply to the rendered messages and print it; exit if it fails."""
    # Imported when used, so a preview without --send (and every other command) starts without openai.
    from app.llm.client import CallOptions, LLMClient, openai_client

    llm = LLMClient(settings, openai_client(settings))
    template = rendered.template
    options = CallOptions(
        temperature=template.temperature,
        max_tokens=template.max_tokens,
        response_format=template.response_format,
    )
    try:
        completion = await llm.complete(rendered.messages, options)
    except LLMError as error:
        fail(f"the LLM did not answer: {error}")
    finally:
        await llm.aclose()
    usage = completion.usage
    print(f"\n=== reply from {completion.model} ({usage.completion_tokens} tokens) ===\n{completion.text}")
