"""`enricher prompts check|render`: check a template directory, preview the chat messages a template makes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from app.errors import LLMError, TemplateError
from app.exits import fail, settings_or_exit
from app.prompts.file_format import Sample, read_samples, read_text
from app.prompts.library import PromptLibrary, PromptTemplate, RenderedPrompt
from app.schemas import CustomerMessage, HistoryTurn, utc_now
from app.settings import Settings
from app.tokens import count_chat, count_text
from app.validation import one_line

prompts_cli = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Check and preview the prompt templates."
)

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}
PROMPTS_DIR = Path("prompts")
Model = Annotated[str, typer.Option(envvar="ENRICHER_MODEL", help="Model whose tokenizer counts the tokens.")]


class HistoryEntry(BaseModel):
    """One turn of a `--history` file."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["customer", "agent"]
    text: str


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
    """Load every template, print its version and token counts, report each problem as file:line.

    Exits 1 when any template is broken or renders over the token budget with a sample.
    """
    templates, problems = PromptLibrary.check(directory)
    counts: dict[PromptTemplate, dict[str, int]] = {}
    if not problems:
        try:
            counts = _sample_tokens(PromptLibrary.load(directory), read_samples(directory), model)
        except TemplateError as error:  # a file changed since the check
            problems.append(error)
    for template in templates:
        print(_template_line(template, counts.get(template, {})))
    problems += _over_budget(counts, max_tokens)
    for problem in problems:
        print(problem)
    verdict = f"{len(problems)} problem(s)" if problems else "no problems"
    print(f"{len(templates)} templates, {verdict}" + ("" if counts else "; token counts once all load"))
    raise typer.Exit(1 if problems else 0)


def _sample_tokens(
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


def _over_budget(counts: Mapping[PromptTemplate, Mapping[str, int]], max_tokens: int) -> list[TemplateError]:
    return [
        TemplateError(
            f"renders to {tokens} tokens with sample {sample}, over the budget of {max_tokens}",
            f"{template.path}:1",
        )
        for template, by_sample in counts.items()
        for sample, tokens in by_sample.items()
        if tokens > max_tokens
    ]


def _template_line(template: PromptTemplate, tokens: Mapping[str, int]) -> str:
    counts = "".join(f"; {sample}: {count} tokens" for sample, count in tokens.items())
    return f"{template.path}: {_label(template)} version {template.version}{counts}"


def _label(template: PromptTemplate) -> str:
    """`support_reply`, `support_reply (variant warm)`, `fallback (fallback)`."""
    kind = " (fallback)" if template.is_fallback else ""
    variant = f" (variant {template.variant})" if template.variant else ""
    return f"{template.name}{variant}{kind}"


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
        str | None, typer.Option(help="Customer id: profile from Redis (else the sample's customer).")
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
    file = None if any(t.name == name for t in library.templates) else _file_named(library, name, variant)
    if file is not None:
        locale = locale or file.conditions.locale
        channel = channel or file.conditions.channel
        tier = tier or file.conditions.tier
    updates = {"text": message, "customer_id": customer, "locale": locale, "channel": channel}
    chat_message = _message(
        sample.message, {key: value for key, value in updates.items() if value is not None}
    )
    profile = {**_profile(customer, redis_url, sample), **({"tier": tier} if tier else {})}
    turns = _read_history(history) if history else sample.history
    if file is None:
        template = _pick(library, name, variant, chat_message, profile)
    else:
        template = file
        _note_other_choice(library, file, chat_message, profile)
    try:
        rendered = library.render(
            template, message=chat_message, customer=profile, history=turns, now=utc_now()
        )
    except TemplateError as error:
        fail(str(error))
    _print_prompt(rendered, chat_message, profile, settings.model if settings else model)
    if settings is not None and not template.is_fallback:
        asyncio.run(_send(settings, rendered))


def _message(sample: CustomerMessage, updates: Mapping[str, str]) -> CustomerMessage:
    try:
        return CustomerMessage.model_validate({**sample.model_dump(), **updates})
    except ValidationError as error:
        fail(f"invalid message: {one_line(error, first_only=True)}")


def _profile(customer_id: str | None, redis_url: str, sample: Sample) -> dict[str, str]:
    """The customer's profile from Redis; the sample's without an id or when Redis does not answer."""
    from app.context import ContextStore, connect

    async def read(customer_id: str) -> dict[str, str] | None:
        store = ContextStore(connect(redis_url, max_connections=2), history_turns=0, ttl_s=1)
        try:
            return await store.profile(customer_id) if await store.ping() else None
        finally:
            await store.aclose()

    if customer_id is None:
        return sample.customer
    profile = asyncio.run(read(customer_id))
    if profile is None:
        print("note: Redis does not answer; using the sample's customer", file=sys.stderr)
        return sample.customer
    if not profile:
        print(f"note: no profile `customer:{customer_id}` in Redis; using an empty one", file=sys.stderr)
    return profile


def _read_history(path: Path) -> list[HistoryTurn]:
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


def _file_named(library: PromptLibrary, name: str, variant: str | None) -> PromptTemplate:
    """The template in file `name` (`support_reply_gold` or `support_reply_gold.j2`); exit if none."""
    wanted = Path(name).name
    found = next((t for t in library.templates if wanted in (t.path.name, t.path.stem)), None)
    if found is None:
        names = ", ".join(sorted({_label(t) for t in library.templates}))
        files = ", ".join(sorted(t.path.name for t in library.templates))
        fail(f"no template {name!r}; there are {names} (or give a file name: {files})")
    if variant is not None and variant != found.variant:
        fail(f"{found.path.name} is variant {found.variant!r}, not {variant!r}")
    return found


def _note_other_choice(
    library: PromptLibrary, file: PromptTemplate, message: CustomerMessage, customer: Mapping[str, str]
) -> None:
    """Say so when the worker would answer this message with another file than the one shown."""
    if file.is_fallback:
        chosen = library.render_fallback(message=message, customer=customer, now=utc_now()).template
    else:
        chosen = library.select(message, customer)
    if chosen.conditions != file.conditions:
        facts = f"channel {message.channel}, locale {message.locale}, tier {customer.get('tier', '-')}"
        print(f"note: the worker answers a message with {facts} with {chosen.path.name}", file=sys.stderr)


def _pick(
    library: PromptLibrary,
    name: str,
    variant: str | None,
    message: CustomerMessage,
    customer: Mapping[str, str],
) -> PromptTemplate:
    """The template of that name (and variant) the worker would use for this message."""
    named = [t for t in library.templates if t.name == name and variant in (None, t.variant)]
    if not named:
        known = ", ".join(sorted({_label(t) for t in library.templates}))
        fail(f"no template {name!r} with variant {variant!r}; there are {known}")
    if named[0].is_fallback:
        chosen = library.render_fallback(message=message, customer=customer, now=utc_now()).template
    else:
        chosen = library.select(message, customer)
    group = [t for t in named if t.conditions == chosen.conditions]
    if not group:
        facts = f"channel {message.channel}, locale {message.locale}, tier {customer.get('tier', '-')}"
        wanted = "; ".join(f"{t.path.name}: {t.conditions.model_dump(exclude_none=True)}" for t in named)
        fail(f"a message with {facts} gets {chosen.path.name}, not {name!r} ({wanted})")
    return chosen if chosen in group else group[0]


def _print_prompt(
    rendered: RenderedPrompt, message: CustomerMessage, customer: Mapping[str, str], model: str
) -> None:
    template = rendered.template
    print(f"{_label(template)} version {template.version} from {template.path}")
    print(f"for channel {message.channel}, locale {message.locale}, tier {customer.get('tier', '-')}", end="")
    settings = {"temperature": template.temperature, "max_tokens": template.max_tokens}
    print("".join(f", {key} {value}" for key, value in settings.items() if value is not None), end="\n\n")
    last = len(rendered.messages) - 1
    for number, chat in enumerate(rendered.messages):
        earlier = " (earlier in the conversation)" if 0 < number < last else ""
        tokens = count_text(chat["content"], model)
        print(f"=== {chat['role']}{earlier}: {tokens} tokens ===\n{chat['content']}\n")
    if template.is_fallback:
        print("=== a fallback goes to the customer as it is, without the LLM ===")
    else:
        print(f"=== {count_chat(rendered.messages, model)} prompt tokens in all for {model} ===")


async def _send(settings: Settings, rendered: RenderedPrompt) -> None:
    from app.llm.client import CallOptions, LLMClient

    llm = LLMClient(settings)
    options = CallOptions(temperature=rendered.template.temperature, max_tokens=rendered.template.max_tokens)
    try:
        completion = await llm.complete(rendered.messages, options)
    except LLMError as error:
        fail(f"the LLM did not answer: {error}")
    finally:
        await llm.aclose()
    usage = completion.usage
    print(f"\n=== reply from {completion.model} ({usage.completion_tokens} tokens) ===\n{completion.text}")
