"""Who may use the gateway (docs/CONTRACT.md, "Who may use the pages"), and what every request
passes on its way in.

Each route declares who may use it by the guard wrapping its endpoint: `Doors.staff` (the
support team: a token from ENRICHER_STUDIO_TOKENS_FILE, its session cookie, or a single-sign-on
proxy's header), `Doors.customer` (a JWT whose `sub` is the customer id) or none (anyone). A
guard answers 401 without the identity, and 429 past the identity's rate limit; an endpoint
raises `Refused` for any other refusal. `Entrance`, a middleware before every route, refuses a
foreign `Origin` (403), a POST body that is not JSON (415) or is over MAX_BODY_BYTES (413,
before reading it), and puts the security headers on every response.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import jwt
from aiolimiter import AsyncLimiter
from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import Settings, read_studio_tokens, studio_token_digest

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
SESSION_COOKIE = "enricher_studio"
SESSION_S = 12 * 3600  # a working day: then the token's URL is opened again
JWT_LEEWAY_S = 30  # clocks of the chat frontend's backend and ours may differ this much
JWKS_ALGORITHMS = ("RS256", "ES256")
JWKS_CACHE_S = 300
# A token whose `kid` the cached JWKS lacks refetches it at most this often (else anyone could make
# the gateway fetch it once a request); a rotated key gets in at most this long after it is published.
JWKS_REFETCH_S = 60
DEV_TOKEN_S = 12 * 3600
MAX_LIMITED_IDENTITIES = 10_000  # rate limiters kept; the least recently used one goes
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),  # a `/studio?token=` URL never leaves in a Referer
]


def error_response(status: int, kind: str, detail: str) -> JSONResponse:
    """An error response of the gateway's endpoints, `{"error": {"kind": ..., "detail": ...}}`:
    `kind` a stable word for programs to check, `detail` the sentence the pages show."""
    return JSONResponse({"error": {"kind": kind, "detail": detail}}, status_code=status)


class Refused(Exception):
    """A request the gateway refuses, as the error response it gets."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail

    def response(self) -> JSONResponse:
        """The error response."""
        return error_response(self.status, self.kind, self.detail)


UNAUTHENTICATED = Refused(401, "unauthenticated", "who you are is not known: sign in first")


@dataclass(frozen=True)
class Staff:
    """A member of the support team, by the name the tokens file or the proxy gives."""

    name: str

    @property
    def identity(self) -> str:
        """Whose rate limit a request counts against."""
        return f"staff:{self.name}"


@dataclass(frozen=True)
class Customer:
    """A customer, by the `sub` of their token."""

    customer_id: str

    @property
    def identity(self) -> str:
        """Whose rate limit a request counts against."""
        return f"customer:{self.customer_id}"


Who = TypeVar("Who", Staff, Customer)


Endpoint = Callable[[Request], Awaitable[Response]]
StaffEndpoint = Callable[[Request, Staff], Awaitable[Response]]
CustomerEndpoint = Callable[[Request, Customer], Awaitable[Response]]


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


class StaffDoor:
    """The support team's ways in: a token, the session cookie it buys, or a trusted proxy's header."""

    def __init__(self, settings: Settings) -> None:
        file = settings.studio_tokens_file
        self._names = read_studio_tokens(file) if file is not None else {}
        self._proxy_header = settings.auth_proxy_header
        self._proxies = settings.trusted_proxies
        # Sessions are signed with a key of this process: a restart signs everyone out, and a
        # token taken out of the file stops buying sessions then.
        self._session_key = secrets.token_bytes(32)

    def by_token(self, token: str) -> Staff | None:
        """Whose token this is; every known hash is compared, in constant time."""
        digest = studio_token_digest(token)
        found = None
        for known, name in self._names.items():
            if hmac.compare_digest(digest, known):
                found = Staff(name)
        return found

    def identify(self, request: Request) -> Staff | None:
        """The staff member making the request, if any."""
        if self._proxy_header is not None and self._from_proxy(request):
            name = request.headers.get(self._proxy_header, "").strip()
            if name:
                return Staff(name)
        token = _bearer(request)
        if token is not None:
            return self.by_token(token)
        session = request.cookies.get(SESSION_COOKIE)
        return self._by_session(session) if session else None

    def _from_proxy(self, request: Request) -> bool:
        # The peer as the socket has it: uvicorn is told not to believe X-Forwarded-For.
        try:
            peer = ipaddress.ip_address(request.client.host if request.client else "")
        except ValueError:
            return False
        return any(peer in network for network in self._proxies)

    def session(self, staff: Staff) -> str:
        """A session cookie's value for `staff`: their name and its expiry, signed."""
        payload = base64.urlsafe_b64encode(f"{int(time.time()) + SESSION_S}:{staff.name}".encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def _by_session(self, value: str) -> Staff | None:
        payload, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        expires, _, name = base64.urlsafe_b64decode(payload).decode().partition(":")
        return Staff(name) if int(expires) > time.time() else None

    def _sign(self, payload: str) -> str:
        return hmac.new(self._session_key, payload.encode(), hashlib.sha256).hexdigest()


class CustomerDoor:
    """Customers' JWTs: HS256 with ENRICHER_CHAT_JWT_SECRET, RS256/ES256 from ENRICHER_CHAT_JWKS_URL."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.chat_jwt_secret
        self._secret = secret.get_secret_value() if secret is not None else None
        url = settings.chat_jwks_url
        self._jwks = (
            jwt.PyJWKClient(url, lifespan=JWKS_CACHE_S, timeout=5, cooldown_duration=JWKS_REFETCH_S)
            if url is not None
            else None
        )

    @property
    def configured(self) -> bool:
        """True when some token can be checked."""
        return self._secret is not None or self._jwks is not None

    async def identify(self, token: str) -> Customer | None:
        """The customer the token names, if it is valid now; `alg` must be one its key allows."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            key: str | jwt.PyJWK
            if algorithm == "HS256" and self._secret is not None:
                key = self._secret
            elif algorithm in JWKS_ALGORITHMS and self._jwks is not None:
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                if key.algorithm_name != algorithm:
                    return None
            else:
                return None  # `none`, or an algorithm nothing here signs with
            claims = jwt.decode(
                token, key, algorithms=[algorithm], options={"require": ["exp", "sub"]}, leeway=JWT_LEEWAY_S
            )
        except jwt.PyJWKClientConnectionError:
            log.warning("the JWKS at ENRICHER_CHAT_JWKS_URL did not answer")
            raise Refused(503, "keys_unavailable", "tokens cannot be checked now; try again") from None
        except jwt.PyJWTError as error:
            log.info("a customer token was refused: %s", error)
            return None
        subject = claims["sub"]
        return Customer(subject) if isinstance(subject, str) and subject else None

    def issue(self, customer_id: str) -> str:
        """A token for `customer_id` signed with the HS256 secret (the demo page's login)."""
        assert self._secret is not None, "ENRICHER_CHAT_DEV_LOGIN=on needs the secret (settings check it)"
        claims = {"sub": customer_id, "iat": int(time.time()), "exp": int(time.time()) + DEV_TOKEN_S}
        return jwt.encode(claims, self._secret, algorithm="HS256")


class RateLimit:
    """At most `per_min` requests a minute per identity (a leaky bucket each, bursts up to it)."""

    def __init__(self, per_min: int, max_identities: int = MAX_LIMITED_IDENTITIES) -> None:
        self._per_min = per_min
        self._max_identities = max_identities
        self._limiters: OrderedDict[str, AsyncLimiter] = OrderedDict()

    async def take(self, identity: str) -> None:
        """Count one request of `identity`; Refused (429) past the limit."""
        limiter = self._limiters.get(identity)
        if limiter is None:
            limiter = self._limiters[identity] = AsyncLimiter(self._per_min, 60)
            if len(self._limiters) > self._max_identities:
                self._limiters.popitem(last=False)
        self._limiters.move_to_end(identity)
        if not limiter.has_capacity():
            raise Refused(429, "too_many_requests", "too many requests: wait a minute")
        await limiter.acquire()  # there is capacity: it returns at once


class StreamSlots:
    """Event streams open now, bounded per identity and in all."""

    def __init__(self, per_identity: int, total: int) -> None:
        self._per_identity = per_identity
        self._total = total
        self._open: Counter[str] = Counter()

    def take(self, identity: str) -> Callable[[], None]:
        """Hold a slot for `identity`'s stream; Refused (429) when none is free. Returns its release."""
        if self._open[identity] >= self._per_identity or self._open.total() >= self._total:
            raise Refused(429, "too_many_streams", "too many event streams open: close one first")
        self._open[identity] += 1

        def release() -> None:
            self._open[identity] -= 1
            if self._open[identity] <= 0:
                del self._open[identity]

        return release


class Doors:
    """The guards the routes are declared with, and the limits they share."""

    def __init__(self, settings: Settings) -> None:
        self.staff_door = StaffDoor(settings)
        self.customer_door = CustomerDoor(settings)
        self.posts = RateLimit(settings.chat_posts_per_min)
        self.tries = RateLimit(settings.studio_tries_per_min)
        self.streams = StreamSlots(settings.chat_streams_per_identity, settings.chat_streams_total)
        if not self.customer_door.configured:
            log.warning(
                "neither ENRICHER_CHAT_JWT_SECRET nor ENRICHER_CHAT_JWKS_URL is set: no customer gets in"
            )

    def staff(
        self, endpoint: StaffEndpoint, *, limit: RateLimit | None = None, login: bool = False
    ) -> Endpoint:
        """`endpoint` for the support team only. With `login`, a GET with `?token=` of the tokens
        file sets the session cookie and redirects to the same URL without the token."""

        async def guarded(request: Request) -> Response:
            token = request.query_params.get("token")
            if login and token is not None:
                return self._login(request, token)
            try:
                return await _let_in(request, self.staff_door.identify(request), limit, endpoint)
            except Refused as refused:
                return refused.response()

        return guarded

    def _login(self, request: Request, token: str) -> Response:
        staff = self.staff_door.by_token(token)
        if staff is None:
            return UNAUTHENTICATED.response()
        log.info("staff %s signed in to the studio", staff.name)
        response = RedirectResponse(request.url.remove_query_params("token"), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.staff_door.session(staff),
            max_age=SESSION_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def customer(
        self, endpoint: CustomerEndpoint, *, limit: RateLimit | None = None, query_token: bool = False
    ) -> Endpoint:
        """`endpoint` for customers only: `Authorization: Bearer <JWT>`, or with `query_token`
        (the event stream, which EventSource opens without headers) `?access_token=<JWT>`."""

        async def guarded(request: Request) -> Response:
            token = _bearer(request)
            if token is None and query_token:
                token = request.query_params.get("access_token")
            try:
                customer = await self.customer_door.identify(token) if token else None
                return await _let_in(request, customer, limit, endpoint)
            except Refused as refused:
                return refused.response()

        return guarded


async def _let_in(
    request: Request,
    who: Who | None,
    limit: RateLimit | None,
    endpoint: Callable[[Request, Who], Awaitable[Response]],
) -> Response:
    """`endpoint` for `who`, counted against their rate limit; Refused (401) without anyone."""
    if who is None:
        raise UNAUTHENTICATED
    if limit is not None:
        await limit.take(who.identity)
    return await endpoint(request, who)


class Entrance:
    """ASGI middleware before every route: Origin, JSON-only POST bodies of bounded size, and the
    security headers on every response."""

    def __init__(self, app: ASGIApp, allowed_origins: tuple[str, ...]) -> None:
        self._app = app
        self._allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            if scope["method"] == "POST":
                receive = await self._body(scope, receive)
            else:
                self._check_origin(scope)
        except Refused as refused:
            await refused.response()(scope, receive, send_with_headers)
            return
        await self._app(scope, receive, send_with_headers)

    def _check_origin(self, scope: Scope) -> None:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            return
        own = str(URL(scope=scope).replace(path="", query="", fragment="")).rstrip("/")
        if origin.lower() not in self._allowed_origins | {own.lower()}:
            raise Refused(403, "foreign_origin", "requests from other sites are refused")

    async def _body(self, scope: Scope, receive: Receive) -> Receive:
        """Check a POST, read its body (refused past MAX_BODY_BYTES, by its Content-Length before
        a byte is read, or as it streams in), and return a `receive` that replays it."""
        self._check_origin(scope)
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise Refused(415, "not_json", "the body must be application/json")
        too_large = Refused(413, "too_large", f"request body over {MAX_BODY_BYTES} bytes")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise too_large
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large
            chunks.append(chunk)
            more = message.get("more_body", False)
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        return replayed
