"""The `enricher` command line: worker, dev stack, chat gateway, send, mock LLM, prompt, DLQ and handoff
tools."""

from __future__ import annotations

import functools
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from app.errors import EXIT_CONFIG, fail, one_line, settings_or_exit
from app.knowledge.cli import knowledge_cli
from app.operator_tools.dead_letters import dlq_cli
from app.operator_tools.handoff_cli import handoff_cli
from app.prompts.cli import prompts_cli

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
cli.add_typer(prompts_cli, name="prompts")
cli.add_typer(knowledge_cli, name="knowledge")
cli.add_typer(dlq_cli, name="dlq")
cli.add_typer(handoff_cli, name="handoff")


@cli.callback()
def main() -> None:
    """stream-enricher: customer messages on Kafka in, LLM replies on Kafka out."""


def _dev_extra_missing(error: ModuleNotFoundError) -> NoReturn:
    fail(
        f"this command is part of the development stack, which needs {error.name}: "
        "pip install 'stream-enricher[dev]' (make installs it)"
    )


@cli.command()
def worker() -> None:
    """Run one worker process, configured by the environment (see docs/CONTRACT.md)."""
    from app.worker import run_worker

    run_worker(settings_or_exit())


@cli.command()
def dev() -> None:
    """Run broker, Redis, mock LLM (without OPENAI_API_KEY), a worker and the chat page; Ctrl-C stops all."""
    try:
        from devstack.dev_config import load_dev_settings
        from devstack.stack import run_dev
    except ModuleNotFoundError as error:
        _dev_extra_missing(error)
    run_dev(settings_or_exit(load_dev_settings))


@cli.command()
def chat(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every one)."),
) -> None:
    """Serve the chat page on ENRICHER_CHAT_PORT: a customer's view, replies streaming in."""
    try:
        from app.chat.gateway import run_chat
    except ModuleNotFoundError as error:
        fail(f"the chat gateway needs {error.name}: pip install 'stream-enricher[chat]' (make installs it)")
    run_chat(settings_or_exit(), host)


@cli.command()
def send(
    text: str | None = typer.Argument(None, help="What the customer writes (not with --order)."),
    conversation: str | None = typer.Option(None, "--conversation", "-c", help="Conversation id (the key)."),
    customer: str | None = typer.Option(None, "--customer", help="Customer id, e.g. cust-1."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the reply."),
    order: str | None = typer.Option(None, help="Instead: publish this order (its id) for --customer."),
    status: str = typer.Option("shipped", help="With --order: received, packed, shipped, delivered, ..."),
    item: Annotated[list[str] | None, typer.Option(help="With --order: an item's name (repeat).")] = None,
    carrier: str | None = typer.Option(None, help="With --order: the carrier."),
    tracking: str | None = typer.Option(None, help="With --order: the tracking number."),
) -> None:
    """Send one customer message and print its reply, or with --order publish one order record
    (finds `enricher dev` by its state file)."""
    try:
        from devstack.sender import order_now, resolve_endpoints, run_send, run_send_order
    except ModuleNotFoundError as error:
        _dev_extra_missing(error)
    if order is not None:
        if customer is None or text is not None:
            fail("--order needs --customer, and no message text", EXIT_CONFIG)
        endpoints = settings_or_exit(resolve_endpoints)
        items = item or ["Mechanical keyboard"]
        build = functools.partial(order_now, order, customer, status, items, carrier, tracking)
        raise typer.Exit(run_send_order(endpoints, build))
    if text is None or conversation is None:
        fail("a message needs its text and --conversation", EXIT_CONFIG)
    endpoints = settings_or_exit(resolve_endpoints)
    raise typer.Exit(run_send(endpoints, text, conversation, customer, timeout))


@cli.command("mock-llm")
def mock_llm(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8800, help="Port to listen on (0 picks a free one)."),
    latency_ms: float = typer.Option(50.0, help="Mean response latency."),
    jitter_ms: float = typer.Option(0.0, help="Uniform +/- spread around the latency."),
    error_rate: float = typer.Option(0.0, help="Probability of an HTTP 500."),
    rate_limit_rate: float = typer.Option(0.0, help="Probability of an HTTP 429."),
    retry_after_s: float = typer.Option(1.0, help="Retry-After header of a 429, in seconds."),
    hang_rate: float = typer.Option(0.0, help="Probability of never answering."),
    require_key: str | None = typer.Option(None, help="Answer 401 unless this API key is sent."),
) -> None:
    """Run the OpenAI-compatible mock LLM; prints its base URL once it listens."""
    try:
        from devstack.mock_llm.server import run
        from devstack.mock_llm.state import MockConfig
    except ModuleNotFoundError as error:
        _dev_extra_missing(error)

    try:
        config = MockConfig(
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            error_rate=error_rate,
            rate_limit_rate=rate_limit_rate,
            retry_after_s=retry_after_s,
            hang_rate=hang_rate,
            require_key=require_key,
        )
    except ValidationError as error:
        fail(f"configuration error: {one_line(error, first_only=True)}", EXIT_CONFIG)
    run(config, host, port)


if __name__ == "__main__":
    cli()
