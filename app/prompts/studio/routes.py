"""The template studio's page and endpoints: the templates and their problems, a template rendered
for a message, and a draft tried on recent traffic next to the current template; each with the
help-center passages the worker would give the message.

Nothing here writes a template: editing stays in `prompts/` and its review. Templates are loaded
from disk on every request (in a thread), so the studio shows the files as they are now.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, TypeVar

from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.chat.api import REDIS_DOWN
from app.chat.doors import Doors, Staff, error_response
from app.chat.store import ChatStore, StoreUnavailable
from app.errors import TemplateError, one_line
from app.kafka.topic_reader import TopicMissing
from app.llm.client import LLMClient, openai_client
from app.prices import PriceTable
from app.prompts.studio.catalog import (
    Catalog,
    StudioKnowledge,
    message_for,
    passages_json,
    recent_messages,
    rendered_json,
    worker_choice,
)
from app.prompts.studio.draft import CallBudget, DraftRefused, Side, compare, render_draft, render_for
from app.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
MAX_TRY_MESSAGES = 10  # each costs two LLM calls
MAX_DRAFT_CHARS = 100_000
Body = TypeVar("Body", bound=BaseModel)


class RenderRequest(BaseModel):
    """`POST /api/studio/render`: a template file, what the customer writes, and who writes it."""

    model_config = ConfigDict(extra="forbid")

    template: str
    text: Annotated[str, Field(min_length=1)]
    customer_id: str | None = None


class TryRequest(BaseModel):
    """`POST /api/studio/try`: a template file, the draft of its whole text, how many messages."""

    model_config = ConfigDict(extra="forbid")

    template: str
    draft: Annotated[str, Field(min_length=1, max_length=MAX_DRAFT_CHARS)]
    n: Annotated[int, Field(ge=1, le=MAX_TRY_MESSAGES)]


class StudioApi:
    """The studio's routes; `start` opens its LLM client in the gateway's lifespan, `stop` closes it."""

    def __init__(self, settings: Settings, store: ChatStore, doors: Doors) -> None:
        self._settings = settings
        self._store = store
        self._doors = doors
        self._prices = PriceTable.load(settings.prices_file)
        self._llm: LLMClient | None = None
        self._budget = CallBudget(settings.studio_max_calls_per_hour)
        self._knowledge = StudioKnowledge(settings.knowledge_dir)

    async def start(self) -> None:
        """Open the LLM client (its HTTP pool belongs to the running event loop), and start indexing
        the help-center."""
        self._llm = LLMClient(self._settings, openai_client(self._settings))
        self._knowledge.start()

    async def stop(self) -> None:
        """Close the LLM client; stop following the help-center."""
        await self._knowledge.stop()
        if self._llm is not None:
            await self._llm.aclose()

    def routes(self) -> list[BaseRoute]:
        """The page at `/studio` and its endpoints under `/api/studio`: the support team's only (its
        static script and style are anyone's, as the chat page's are)."""
        staff = self._doors.staff
        return [
            Route("/studio", staff(self.page, login=True)),
            Route("/api/studio/templates", staff(self.templates)),
            Route("/api/studio/customers", staff(self.customers)),
            Route("/api/studio/render", staff(self.render), methods=["POST"]),
            Route("/api/studio/try", staff(self.try_draft, limit=self._doors.tries), methods=["POST"]),
            # The page's script and style: no secret in them, and the page itself is behind the door.
            Mount("/studio/static", StaticFiles(directory=STATIC), name="studio_static"),
        ]

    async def page(self, request: Request, staff: Staff) -> Response:
        """`GET /studio`: the studio page."""
        return FileResponse(STATIC / "studio.html")

    async def customers(self, request: Request, staff: Staff) -> Response:
        """`GET /api/studio/customers`: the profiles in Redis, for the preview's customer picker."""
        try:
            return JSONResponse({"customers": await self._store.customers()})
        except StoreUnavailable:
            return REDIS_DOWN.response()

    async def _catalog(self) -> Catalog:
        settings = self._settings
        return await asyncio.to_thread(
            Catalog.load, settings.prompts_dir, settings.model, settings.max_prompt_tokens
        )

    async def _profiles(self) -> dict[str, dict[str, str]]:
        """The profiles the chat page lists, by customer id, as the worker reads them."""
        customers = await self._store.customers()
        return {c["customer_id"]: {k: v for k, v in c.items() if k != "customer_id"} for c in customers}

    async def templates(self, request: Request, staff: Staff) -> Response:
        """`GET /api/studio/templates`: every template that loads and every problem, as `check` has them."""
        return JSONResponse((await self._catalog()).summary())

    async def render(self, request: Request, staff: Staff) -> Response:
        """`POST /api/studio/render`: the chat messages the template makes for the message and
        customer (the first sample's history), with their token counts."""
        body = await _body(request, RenderRequest)
        if isinstance(body, Response):
            return body
        catalog = await self._catalog()
        template = catalog.file(body.template)
        if template is None:
            return error_response(404, "no_template", f"no template file {body.template!r} loads")
        try:
            profiles = await self._profiles() if body.customer_id else {}
        except StoreUnavailable:
            return REDIS_DOWN.response()
        customer = profiles.get(body.customer_id or "", {})
        sample = next(iter(catalog.samples.values()))
        try:
            message = message_for(sample, template, body.text, body.customer_id)
        except ValidationError as error:
            return error_response(422, "invalid_message", one_line(error, first_only=True))
        passages = self._knowledge.passages_for(message, customer, sample.history)
        records = [hit.as_record() for hit in passages]
        try:
            rendered = render_for(catalog.library, template, message, customer, sample.history, records)
        except TemplateError as error:
            return error_response(422, "render_failed", str(error))
        shown = rendered_json(rendered, self._settings.model)
        chosen = None if template.sent_as_is else worker_choice(catalog.library, message, customer)
        found = {"passages": passages_json(passages), "knowledge_problem": self._knowledge.problem()}
        return JSONResponse(
            shown | {"file": template.path.name, "worker_choice": chosen, "customer": customer} | found
        )

    async def try_draft(self, request: Request, staff: Staff) -> Response:
        """`POST /api/studio/try`: the newest `n` input messages answered with the current file and
        with the draft; 422 with every problem, `file:line`, when the draft does not load (or goes
        over its child process's limits); 429 when the studio's LLM budget is spent."""
        body = await _body(request, TryRequest)
        if isinstance(body, Response):
            return body
        log.info("draft try by %s: %s on the newest %d messages", staff.name, body.template, body.n)
        assert self._llm is not None, "StudioApi.start() first"
        settings = self._settings
        catalog = await self._catalog()
        current = catalog.file(body.template)
        if current is None:
            return error_response(404, "no_template", f"no template file {body.template!r} loads")
        if current.sent_as_is:
            return error_response(
                422, current.kind, f"a {current.kind} goes out without the LLM: render it instead"
            )
        try:
            messages = await recent_messages(settings, body.n)
            profiles = await self._profiles()
        except (KafkaError, TimeoutError, TopicMissing) as error:
            log.warning("could not read %s for a draft try: %r", settings.input_topic, error)
            return error_response(
                503, "broker_unavailable", "the recent messages could not be read: try again"
            )
        except StoreUnavailable:
            return REDIS_DOWN.response()
        customers = [profiles.get(message.customer_id or "", {}) for message in messages]
        passages = [self._knowledge.passages_for(m, c, ()) for m, c in zip(messages, customers, strict=True)]
        knowledge = [[hit.as_record() for hit in hits] for hits in passages]
        try:  # the draft is anyone's code: compiled and rendered apart, within limits
            draft = await render_draft(
                settings.prompts_dir, body.template, body.draft, messages, customers, knowledge
            )
        except DraftRefused as refused:
            problems = [vars(problem) for problem in refused.problems]
            return JSONResponse(
                {"error": {"kind": "draft_refused", "detail": str(refused), "problems": problems}},
                status_code=422,
            )
        calls = 2 * len(messages)
        if not await self._budget.take(calls):
            return error_response(429, "studio_budget_spent", self._budget.refusal(calls))
        current_side = await asyncio.to_thread(
            Side.current, catalog.library, current, messages, customers, knowledge
        )
        sides = (current_side, Side.draft(draft, current))
        results = await compare(self._llm, self._prices, sides, messages)
        for result, hits in zip(results, passages, strict=True):
            result["passages"] = passages_json(hits)
        return JSONResponse(
            {
                "file": body.template,
                "results": results,
                "llm_calls": calls,
                "knowledge_problem": self._knowledge.problem(),
            }
        )


async def _body(request: Request, model: type[Body]) -> Body | Response:
    """The request's JSON as `model`, or the 422 response refusing it (`Entrance` has refused a
    body over its size limit before any route runs)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        return error_response(422, "invalid_request", one_line(error, first_only=True))
