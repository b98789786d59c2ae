"""Who the gateway tests are: a staff token in a tokens file, and customers' JWTs signed with the
secret the test gateways are started with."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import jwt

from app.settings import studio_token_line

STAFF_TOKEN = secrets.token_urlsafe(32)
JWT_SECRET = secrets.token_urlsafe(32)
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def write_tokens_file(directory: Path) -> Path:
    """A tokens file in `directory` holding STAFF_TOKEN's hash, as staff member `tester`."""
    path = directory / "studio-tokens"
    path.write_text(f"# the tests' staff\n{studio_token_line('tester', STAFF_TOKEN)}")
    return path


def doors_env(tokens_file: Path) -> dict[str, str]:
    """The gateway settings that let the tests in: the tokens file, the JWT secret, the demo login."""
    return {
        "ENRICHER_STUDIO_TOKENS_FILE": str(tokens_file),
        "ENRICHER_CHAT_JWT_SECRET": JWT_SECRET,
        "ENRICHER_CHAT_DEV_LOGIN": "on",
    }


def customer_token(customer_id: str, *, ttl_s: float = 600, key: str = JWT_SECRET, **claims: Any) -> str:
    """An HS256 token for `customer_id`, valid for `ttl_s` (negative: expired that long ago)."""
    return jwt.encode({"sub": customer_id, "exp": int(time.time() + ttl_s)} | claims, key, algorithm="HS256")


def as_customer(customer_id: str) -> dict[str, str]:
    """The headers of a request by `customer_id`."""
    return {"Authorization": f"Bearer {customer_token(customer_id)}"}
