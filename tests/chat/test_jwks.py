"""Customers' tokens checked against a JWKS (ENRICHER_CHAT_JWKS_URL), on real gateways that have
no HS256 secret, with the keys published by a real HTTP server on this machine: RS256 and ES256
tokens of published keys get in; another key's signature, an HS256 token, a key used for another
algorithm and an unknown `kid` do not; and unknown kids cannot make the gateway fetch the JWKS
once a request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from devstack.processes import free_port
from tests.helpers.credentials import customer_token
from tests.helpers.gateway import Gateway

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
UNKNOWN_KIDS = 20


class JwksServer:
    """A JWKS at `url`, served by a thread of this process, counting the times it is fetched."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.fetches = 0
        body = json.dumps({"keys": keys}).encode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1  # one request at a time: the gateway holds a lock while it fetches
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows the gateway's log when a test fails."""

        self._http = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


def _published() -> list[dict[str, Any]]:
    """The public halves of RSA_KEY (`rsa-1`, RS256) and EC_KEY (`ec-1`, ES256), as a JWKS has them."""
    rsa_jwk = RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
    ec_jwk = ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True)
    return [
        rsa_jwk | {"kid": "rsa-1", "alg": "RS256", "use": "sig"},
        ec_jwk | {"kid": "ec-1", "alg": "ES256", "use": "sig"},
    ]


def _token(key: PrivateKey, algorithm: str, kid: str, customer_id: str) -> str:
    claims = {"sub": customer_id, "exp": int(time.time()) + 600}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def _hs256_with_public_key(kid: str, customer_id: str) -> str:
    """An HS256 token whose HMAC key is RSA_KEY's public PEM (the algorithm confusion attack):
    PyJWT refuses to sign one, so it is put together here."""
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")
        for part in (
            {"alg": "HS256", "typ": "JWT", "kid": kid},
            {"sub": customer_id, "exp": time.time() + 600},
        )
    ]
    signing_input = b".".join(segments)
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signature = base64.urlsafe_b64encode(hmac.new(pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    """The module's JWKS, publishing RSA_KEY and EC_KEY."""
    with JwksServer(_published()) as server:
        yield server


def _jwks_only(env: dict[str, str], url: str) -> dict[str, str]:
    """`env` on a port of its own, checking customers' tokens against `url` only: no HS256 secret
    (and so no demo login, which signs with it)."""
    own = {
        "ENRICHER_CHAT_PORT": str(free_port()),
        "ENRICHER_CHAT_JWKS_URL": url,
        "ENRICHER_CHAT_DEV_LOGIN": "off",
    }
    return {name: value for name, value in env.items() if name != "ENRICHER_CHAT_JWT_SECRET"} | own


@pytest.fixture(scope="module")
async def keyed(
    shared_chat_env: dict[str, str], jwks: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """A gateway checking customers' tokens against `jwks` only."""
    gateway = Gateway(_jwks_only(shared_chat_env, jwks.url), tmp_path_factory.mktemp("jwks") / "chat.log")
    await gateway.start()
    yield gateway
    gateway.stop()


async def _post(client: httpx.AsyncClient, token: str) -> int:
    """The status of a message posted with `token` to a conversation of its own."""
    body = {"conversation_id": f"c-{uuid.uuid4().hex[:8]}", "text": "Hello"}
    response = await client.post("/api/messages", json=body, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_rs256_and_es256_tokens_of_published_keys_get_in(keyed: Gateway) -> None:
    async with httpx.AsyncClient(base_url=keyed.url) as client:
        assert await _post(client, _token(RSA_KEY, "RS256", "rsa-1", "cust-rsa")) == 202
        assert await _post(client, _token(EC_KEY, "ES256", "ec-1", "cust-ec")) == 202


async def test_tokens_not_signed_by_the_published_key_for_their_algorithm_are_refused(keyed: Gateway) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    refused = {
        "another key, a published kid": _token(OTHER_RSA_KEY, "RS256", "rsa-1", customer),
        "HS256, the other gateways' secret": customer_token(customer),
        "HS256 keyed with the public key": _hs256_with_public_key("rsa-1", customer),
        "ES256 naming the RS256 key": _token(EC_KEY, "ES256", "rsa-1", customer),
        "unknown kid": _token(RSA_KEY, "RS256", "rsa-2", customer),
        "no kid": jwt.encode({"sub": customer, "exp": int(time.time()) + 600}, RSA_KEY, algorithm="RS256"),
    }
    async with httpx.AsyncClient(base_url=keyed.url) as client:
        for why, token in refused.items():
            assert await _post(client, token) == 401, why
        assert await _post(client, _token(RSA_KEY, "RS256", "rsa-1", customer)) == 202


async def test_unknown_kids_refetch_the_jwks_at_most_once_a_cooldown(
    shared_chat_env: dict[str, str], tmp_path: Path
) -> None:
    with JwksServer(_published()) as server:
        gateway = Gateway(_jwks_only(shared_chat_env, server.url), tmp_path / "chat.log")
        await gateway.start()
        try:
            async with httpx.AsyncClient(base_url=gateway.url) as client:
                assert await _post(client, _token(EC_KEY, "ES256", "ec-1", "cust-first")) == 202
                assert server.fetches == 1
                for number in range(UNKNOWN_KIDS):
                    unknown = _token(RSA_KEY, "RS256", f"rotated-{number}", f"cust-{number}")
                    assert await _post(client, unknown) == 401
                assert server.fetches == 1  # within JWKS_REFETCH_S of the first fetch: refused from the cache
                assert await _post(client, _token(RSA_KEY, "RS256", "rsa-1", "cust-known")) == 202
                assert server.fetches == 1
        finally:
            gateway.stop()
