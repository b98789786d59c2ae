"""The gateway as one ASGI app: the chat page and its API, the template studio, health; and
`run_chat` serving it.

Its parts are opened in the lifespan, in order, and closed in reverse.
"""

from __future__ import annotations

import logging.config
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.chat.api import ChatApi
from app.chat.doors import Doors, Entrance
from app.chat.feed import ReplyFeed
from app.chat.hub import ConversationHub
from app.chat.intake import Intake
from app.chat.store import ChatStore
from app.observability.logs import logging_config
from app.prompts.studio.routes import StudioApi
from app.settings import Settings

STATIC = Path(__file__).with_name("static")
SHUTDOWN_GRACE_S = 2  # event streams never end by themselves: cut them after this long


def build_app(settings: Settings, *, address: str = "", host: str = "") -> Starlette:
    """The gateway for `settings` bound to `host` (a name it answers to besides
    ENRICHER_CHAT_ALLOWED_HOSTS); prints `address` once it serves."""
    hub = ConversationHub()
    doors = Doors(settings)
    dev_login = settings.chat_dev_login == "on"
    store = ChatStore(settings)
    api = ChatApi(
        hub, ReplyFeed(settings, hub), Intake(settings), store, settings.max_input_chars, doors, dev_login
    )
    studio = StudioApi(settings, api.store, doors)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(api.store.aclose)
            await api.intake.start()
            stack.push_async_callback(api.intake.stop)
            await api.feed.start()
            stack.push_async_callback(api.feed.stop)
            stack.callback(hub.close)
            await studio.start()
            stack.push_async_callback(studio.stop)
            if address:
                print(f"enricher chat: the chat page is on {address}", flush=True)
            yield

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def healthz(request: Request) -> Response:
        """Alive; with the broker's state as the feed last saw it, and the browsers listening."""
        broker = api.feed.broker
        state = {"connected": broker.connected, "detail": broker.detail, "since": broker.since}
        return JSONResponse({"status": "ok", "broker": state, "subscribers": hub.subscribers})

    async def readyz(request: Request) -> Response:
        """200 while the broker answers; 503 with the reason otherwise."""
        broker = api.feed.broker
        if broker.connected:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reasons": {"kafka": broker.detail}}, status_code=503)

    routes = [
        Route("/", page),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *api.routes(),
        *studio.routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # The route-less pages and health are anyone's; every other route declares who (api, studio).
    hosts = [*settings.chat_allowed_hosts, *([host] if host not in ("", "0.0.0.0", "::") else [])]
    middleware = [
        Middleware(Entrance, allowed_origins=settings.chat_allowed_origins),
        Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def run_chat(settings: Settings, host: str) -> None:
    """Serve the gateway on `host` and ENRICHER_CHAT_PORT until SIGINT or SIGTERM."""
    logging.config.dictConfig(logging_config(settings))
    logging.getLogger("uvicorn.error").setLevel(
        logging.WARNING
    )  # its start-up chatter: the address is printed
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    app = build_app(settings, address=f"http://{shown}:{settings.chat_port}/", host=host)
    config = uvicorn.Config(
        app,
        host=host,
        port=settings.chat_port,
        log_config=None,  # ours, above
        access_log=False,
        proxy_headers=False,  # the peer is the socket's: ENRICHER_TRUSTED_PROXIES decides whom to believe
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise SystemExit(1)  # uvicorn has logged why (the port taken, the broker not answering)
