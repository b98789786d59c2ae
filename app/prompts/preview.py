"""The workings of `enricher prompts render`: its inputs, the template it shows, the preview, `--send`.

Input that cannot be used ends the command through `app.exits.fail`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from app.errors import LLMError, TemplateError
from app.exits import fail
from app.prompts.file_format import Sample, read_text
from app.prompts.library import PromptLibrary, PromptTemplate, RenderedPrompt
from app.schemas import CustomerMessage, HistoryTurn, Order
from app.settings import Settings
from app.tokens import count_chat, count_text
from app.validation import one_line


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
