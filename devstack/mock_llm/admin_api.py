"""The mock LLM's admin API, `/_mock/*`: tests and the benchmark steer and inspect a running mock.

`admin.py` is its client; the answers are JSON, a 400 says what is wrong in one line.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web
from pydantic import ValidationError

from app.errors import one_line
from devstack.mock_llm.state import STATE, Json, MockConfig, Script


async def _json_object(request: web.Request) -> Json:
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


def _bad_request(error: ValueError, prefix: str = "") -> web.Response:
    message = prefix + (one_line(error) if isinstance(error, ValidationError) else str(error))
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=400)


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].config.model_dump())


async def _put_config(request: web.Request) -> web.Response:
    """Change the fields the body names; the others keep their values."""
    state = request.app[STATE]
    try:
        changes = await _json_object(request)
        state.config = MockConfig.model_validate(state.config.model_dump() | changes)
    except ValueError as error:  # a ValidationError, or a body that is no JSON object
        return _bad_request(error)
    return web.json_response(state.config.model_dump())


async def _post_script(request: web.Request) -> web.Response:
    """Queue `{"steps": [step, ...]}` or a single step object after the steps already queued."""
    state = request.app[STATE]
    try:
        body = await _json_object(request)
        script = Script.model_validate({"steps": body.get("steps", [body])})
    except ValueError as error:
        return _bad_request(error, "invalid script: ")
    state.script.extend(script.steps)
    return web.json_response({"queued": len(state.script)})


async def _release(request: web.Request) -> web.Response:
    request.app[STATE].release()
    return web.json_response({"released": True})


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": list(request.app[STATE].recorded)})


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[STATE].recorded.clear()
    return web.json_response({"cleared": True})


async def _get_stats(request: web.Request) -> web.Response:
    return web.json_response(dataclasses.asdict(request.app[STATE].stats))


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


def admin_routes() -> list[web.RouteDef]:
    """The `/_mock/*` routes."""
    return [
        web.get("/_mock/config", _get_config),
        web.put("/_mock/config", _put_config),
        web.post("/_mock/script", _post_script),
        web.post("/_mock/release", _release),
        web.get("/_mock/requests", _get_requests),
        web.delete("/_mock/requests", _clear_requests),
        web.get("/_mock/stats", _get_stats),
        web.post("/_mock/reset", _reset),
    ]
