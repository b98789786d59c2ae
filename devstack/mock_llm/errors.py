"""The mock LLM's error responses, shaped and worded as OpenAI's."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

ERRORS = {  # status: (type, code, message), as OpenAI words them
    400: ("invalid_request_error", "invalid_request", "The request was rejected (mock)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", "forbidden", "You are not allowed to use this model (mock)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (mock)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (mock)."),
    500: ("server_error", "server_error", "The server had an error processing your request."),
    503: ("server_error", "service_unavailable", "The mock LLM is shutting down."),
}
QUOTA_USED_UP = (
    "insufficient_quota",
    "insufficient_quota",
    "You exceeded your current quota, please check your plan and billing details.",
)


def error_response(
    status: int,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    kind: tuple[str, str, str] | None = None,
) -> web.Response:
    """An OpenAI-shaped error body for `status` (or of `kind`: type, code, message)."""
    error_type, code, default = kind or ERRORS.get(status) or ERRORS[500 if status >= 500 else 400]
    body = {"error": {"message": message or default, "type": error_type, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)
