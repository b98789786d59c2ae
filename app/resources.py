"""The clients a worker opens once (Redis, LLM, templates, embedded models), passed down as one bundle."""

from __future__ import annotations

import os
from dataclasses import dataclass

from app.context import ContextStore
from app.guard import OutputGuard
from app.handoff import HeldConversations
from app.knowledge.index import BackgroundKnowledge
from app.llm.client import LLMClient, openai_client
from app.prices import PriceTable
from app.prompts.library import PromptSource
from app.redis_client import connect
from app.settings import Settings
from app.signals.models import BackgroundModels, Embedder, in_background
from app.tools import Toolbox


@dataclass(frozen=True)
class Resources:
    """Everything the pipeline needs besides the message."""

    settings: Settings
    context: ContextStore
    """The worker's Redis: context, stored replies, a conversation's handoff state."""
    held: HeldConversations
    """The conversations a human holds by the handoff topics (fed by the worker's HandoffFollower)."""
    llm: LLMClient
    prompts: PromptSource
    knowledge: BackgroundKnowledge
    """The help-center's articles, indexed in the background while the worker starts; reloaded like
    the templates."""
    prices: PriceTable
    signals: BackgroundModels | None
    """None with ENRICHER_SIGNALS=off."""
    guard: OutputGuard
    tools: Toolbox
    """What serves prompts/tools.yaml's tools: `tools.for_customer(customer_id, the template's tools)`."""

    @classmethod
    def build(cls, settings: Settings) -> Resources:
        """Create every client (connections open lazily); TemplateError for bad templates, intents or
        articles."""
        prompts = PromptSource.load(settings.prompts_dir)
        # WordLlama, loaded once in the background for the signal models and the help-center's index.
        embedder = in_background(Embedder, "embedder")
        knowledge = BackgroundKnowledge(settings.knowledge_dir, embedder)  # a broken article: TemplateError
        redis = connect(
            settings.redis_url.get_secret_value(),
            max_connections=settings.max_in_flight + 16,
            cluster=settings.redis_cluster == "on",
        )
        held = HeldConversations(settings.history_ttl_s)  # kept current by the worker's HandoffFollower
        context = ContextStore(
            redis,
            history_turns=settings.history_turns,
            ttl_s=settings.history_ttl_s,
            held=held,
            orders_ttl_s=settings.orders_ttl_s,
        )
        llm, prices = LLMClient(settings, openai_client(settings)), PriceTable.load(settings.prices_file)
        # A broken intents.yaml: TemplateError.
        signals = BackgroundModels(settings.prompts_dir, embedder) if settings.signals == "on" else None
        if signals is not None:
            prompts.follow(signals.reread)  # the intents file, edited with the templates
        return cls(
            settings=settings,
            context=context,
            held=held,
            llm=llm,
            prompts=prompts,
            knowledge=knowledge,
            prices=prices,
            signals=signals,
            guard=OutputGuard(),
            # The HTTP tools' headers name variables the support team chose in tools.yaml, so they
            # cannot be Settings fields: the tools read them from the worker's environment.
            tools=Toolbox(context, os.environ),
        )

    async def aclose(self) -> None:
        """Close the LLM, Redis and tools' connection pools."""
        await self.llm.aclose()
        await self.context.aclose()
        await self.tools.aclose()
