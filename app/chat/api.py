"""The gateway's JSON and event-stream endpoints, which the chat page calls: each customer's own
conversations only (a conversation belongs to the customer who first wrote in it or listened to it)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.chat.doors import Customer, Doors, Refused, error_response
from app.chat.feed import ReplyFeed
from app.chat.hub import ConversationHub, EventStream
from app.chat.intake import Intake, outgoing
from app.chat.store import ChatStore, StoreUnavailable
from app.errors import BadInput

log = logging.getLogger(__name__)
MAX_CUSTOMER_ID_CHARS = 200
REDIS_DOWN = Refused(503, "redis_unavailable", "Redis did not answer: try again")


@dataclass(frozen=True)
class ChatApi:
    """What the endpoints work with, opened and closed by the gateway."""

    hub: ConversationHub
    feed: ReplyFeed
    intake: Intake
    store: ChatStore
    max_input_chars: int
    doors: Doors
    dev_login: bool
    """ENRICHER_CHAT_DEV_LOGIN=on: the demo page's customer list and login exist."""

    def routes(self) -> list[BaseRoute]:
        """The endpoints under `/api`, each with who may use it."""
        customer = self.doors.customer
        routes: list[BaseRoute] = [
            Route("/api/messages", customer(self.post_message, limit=self.doors.posts), methods=["POST"]),
            Route("/api/conversations/{conversation_id}/events", customer(self.events, query_token=True)),
            Route("/api/conversations/{conversation_id}/replies/{message_id}", customer(self.stored_reply)),
        ]
        if self.dev_login:  # anyone: a demo stack, where the page plays every customer
            routes += [
                Route("/api/customers", self.customers),
                Route("/api/dev/login", self.demo_login, methods=["POST"]),
            ]
        return routes

    async def customers(self, request: Request) -> Response:
        """`GET /api/customers`: the profiles in Redis, for the demo page's customer picker."""
        try:
            return JSONResponse({"customers": await self.store.customers()})
        except StoreUnavailable:
            return REDIS_DOWN.response()

    async def demo_login(self, request: Request) -> Response:
        """`POST /api/dev/login` with `{customer_id}`: `{token}`, a customer token for the demo page."""
        try:
            customer_id = json.loads(await request.body()).get("customer_id")
        except (ValueError, AttributeError):  # not JSON, or not an object
            customer_id = None
        if not isinstance(customer_id, str) or not 0 < len(customer_id) <= MAX_CUSTOMER_ID_CHARS:
            return error_response(422, "invalid_request", "customer_id: a string of 1 to 200 characters")
        return JSONResponse({"token": self.doors.customer_door.issue(customer_id)})

    async def _own(self, conversation_id: str, customer: Customer) -> None:
        """Claim the conversation for `customer` if nobody owns it; Refused (403) if another does."""
        try:
            owner = await self.store.claim(conversation_id, customer.customer_id)
        except StoreUnavailable:
            raise REDIS_DOWN from None
        if owner != customer.customer_id:
            raise Refused(403, "not_yours", "this conversation belongs to another customer")

    async def post_message(self, request: Request, customer: Customer) -> Response:
        """`POST /api/messages` with `{conversation_id, text}` as the token's customer: 202 once the
        broker has it, with the new `message_id`; 422 with the reason the worker would give when
        refused; 403 for a `customer_id` other than the token's, or another's conversation."""
        try:
            document = json.loads(await request.body())
        except ValueError as error:  # not UTF-8 or not JSON
            return error_response(422, "invalid_json", f"not JSON: {error}")
        if isinstance(document, dict):
            if document.get("customer_id", customer.customer_id) != customer.customer_id:
                return error_response(403, "customer_mismatch", "customer_id is not the token's")
            document["customer_id"] = customer.customer_id
        try:
            record = outgoing(document, self.max_input_chars)
        except BadInput as error:
            return error_response(422, error.kind, str(error))
        message = record.message
        await self._own(message.conversation_id, customer)
        self.hub.watch(message.conversation_id)  # before producing: its reply may come at once
        try:
            await self.intake.send(record)
        except (KafkaError, TimeoutError) as error:
            log.warning("could not produce %s: %r", message.message_id, error)
            return error_response(503, "broker_unavailable", "the broker did not take the message: try again")
        accepted = {"message_id": message.message_id, "conversation_id": message.conversation_id}
        return JSONResponse(accepted | {"trace_id": record.trace.trace_id}, status_code=202)

    async def events(self, request: Request, customer: Customer) -> Response:
        """`GET /api/conversations/{id}/events`: the conversation's chunks, replies and handoff
        records as server-sent events, after `Last-Event-ID` when the browser reconnects to the
        same gateway process. The page listens before it writes: listening claims it too."""
        conversation_id = request.path_params["conversation_id"]
        await self._own(conversation_id, customer)
        release = self.doors.streams.take(customer.customer_id)
        # EventSource sends the header on its own retries; a page reopening the stream itself
        # can only pass the id in the query.
        last_event_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        return EventStream(self.hub, self.hub.subscribe(conversation_id, last_event_id), release)

    async def stored_reply(self, request: Request, customer: Customer) -> Response:
        """`GET /api/conversations/{id}/replies/{message_id}`: the reply as the worker stored it
        (for a page that was offline when it was published); 404 while there is none."""
        params = request.path_params
        try:
            owner = await self.store.owner(params["conversation_id"])
            reply = await self.store.reply(params["conversation_id"], params["message_id"])
        except StoreUnavailable:
            return REDIS_DOWN.response()
        if owner is not None and owner != customer.customer_id:
            return error_response(403, "not_yours", "this conversation belongs to another customer")
        if reply is None or owner is None:
            return error_response(404, "not_found", "no stored reply (yet)")
        return JSONResponse(reply)
