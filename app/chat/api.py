"""The gateway's JSON and event-stream endpoints, which the chat page calls."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.chat.feed import ReplyFeed
from app.chat.hub import ConversationHub
from app.chat.intake import Intake, outgoing
from app.chat.sse import event_stream
from app.chat.store import ChatStore, StoreUnavailable
from app.errors import BadInput

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024


def error_response(status: int, kind: str, detail: str) -> JSONResponse:
    """An error response of the gateway's endpoints, `{"error": {"kind": ..., "detail": ...}}`:
    `kind` a stable word for programs to check, `detail` the sentence the pages show."""
    return JSONResponse({"error": {"kind": kind, "detail": detail}}, status_code=status)


@dataclass(frozen=True)
class ChatApi:
    """What the endpoints work with, opened and closed by the gateway."""

    hub: ConversationHub
    feed: ReplyFeed
    intake: Intake
    store: ChatStore
    max_input_chars: int

    def routes(self) -> list[BaseRoute]:
        """The endpoints under `/api`."""
        return [
            Route("/api/customers", self.customers),
            Route("/api/messages", self.post_message, methods=["POST"]),
            Route("/api/conversations/{conversation_id}/events", self.events),
            Route("/api/conversations/{conversation_id}/replies/{message_id}", self.stored_reply),
        ]

    async def customers(self, request: Request) -> Response:
        """`GET /api/customers`: the profiles in Redis, for the page's customer picker."""
        try:
            return JSONResponse({"customers": await self.store.customers()})
        except StoreUnavailable as error:
            return error_response(503, "redis_unavailable", str(error))

    async def post_message(self, request: Request) -> Response:
        """`POST /api/messages` with `{conversation_id, customer_id, text}`: 202 once the broker has
        it, with the new `message_id`; 422 with the reason the worker would give when refused."""
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return error_response(413, "too_large", f"request body over {MAX_BODY_BYTES} bytes")
        try:
            document = json.loads(body)
        except ValueError as error:  # not UTF-8 or not JSON
            return error_response(422, "invalid_json", f"not JSON: {error}")
        try:
            record = outgoing(document, self.max_input_chars)
        except BadInput as error:
            return error_response(422, error.kind, str(error))
        message = record.message
        self.hub.watch(message.conversation_id)  # before producing: its reply may come at once
        try:
            await self.intake.send(record)
        except (KafkaError, TimeoutError) as error:
            log.warning("could not produce %s: %r", message.message_id, error)
            return error_response(
                503, "broker_unavailable", f"the broker did not take the message: {error!r}"
            )
        accepted = {"message_id": message.message_id, "conversation_id": message.conversation_id}
        return JSONResponse(accepted | {"trace_id": record.trace.trace_id}, status_code=202)

    async def events(self, request: Request) -> Response:
        """`GET /api/conversations/{id}/events`: the conversation's chunks, replies and handoff
        records as server-sent events, after `Last-Event-ID` when the browser reconnects."""
        conversation_id = request.path_params["conversation_id"]
        # EventSource sends the header on its own retries; a page reopening the stream itself
        # can only pass the id in the query.
        last_event_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        return event_stream(self.hub, self.hub.subscribe(conversation_id, last_event_id))

    async def stored_reply(self, request: Request) -> Response:
        """`GET /api/conversations/{id}/replies/{message_id}`: the reply as the worker stored it
        (for a page that was offline when it was published); 404 while there is none."""
        params = request.path_params
        try:
            reply = await self.store.reply(params["conversation_id"], params["message_id"])
        except StoreUnavailable as error:
            return error_response(503, "redis_unavailable", str(error))
        if reply is None:
            return error_response(404, "not_found", "no stored reply (yet)")
        return JSONResponse(reply)
