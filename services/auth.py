"""Bearer tokens: minted with 256 random bits, stored only as SHA-256 hashes, compared in
constant time.

A token made here says whose it is: ``wlo.<secret>`` (a generated operator token),
``wla.<account id>.<secret>`` (an account). The id lets a request find the one hash to compare
against (a keyed lookup, which also routes on a distributed database) without ever storing or
logging the secret. An operator token set in ``WATCHLEDGER_OPERATOR_TOKEN`` may have any shape.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from typing import Any, Literal

import asyncpg
import msgspec
import structlog

from eventstore.queries import load_queries

from .errors import ApiError

log = structlog.get_logger(__name__)

QUERIES = load_queries("services")
PrincipalKind = Literal["operator", "account", "server"]
_PREFIX: dict[PrincipalKind, str] = {"operator": "wlo", "account": "wla", "server": "wls"}
_KIND: dict[str, PrincipalKind] = {"wlo": "operator", "wla": "account", "wls": "server"}


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the operator, or an account or server by id."""

    kind: PrincipalKind
    id: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(kind: PrincipalKind, owner: str | None = None) -> tuple[str, str]:
    """(token, its hash) for a new credential of ``kind`` (``owner``: the account's id)."""
    secret = secrets.token_urlsafe(32)  # 256 bits
    token = f"{_PREFIX[kind]}.{secret}" if owner is None else f"{_PREFIX[kind]}.{owner}.{secret}"
    return token, hash_token(token)


def parse_token(token: str) -> tuple[PrincipalKind, str | None] | None:
    """(kind, owner id) a token claims to be, or None if it has no known shape."""
    prefix, _, rest = token.partition(".")
    kind = _KIND.get(prefix)
    if kind is None or not rest:
        return None
    if kind == "operator":
        return kind, None
    owner, _, secret = rest.rpartition(".")
    return (kind, owner) if owner and secret else None


def matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; 401 when there is none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("an Authorization: Bearer token is required")
    return token.strip()


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "forbidden", detail)


async def operator_token_hash(pool: asyncpg.Pool[Any], configured: str | None) -> str:
    """The hash the operator's token must match. With ``WATCHLEDGER_OPERATOR_TOKEN`` set, its
    hash; otherwise the stored one, generating (and printing, once) a token on first start."""
    if configured:
        return hash_token(configured)
    stored: str | None = await pool.fetchval(QUERIES["secret_get"], "operator_token")
    if stored is not None:
        return stored
    token, digest = new_token("operator")
    won: str | None = await pool.fetchval(QUERIES["secret_add"], "operator_token", digest)
    if won is None:  # another process generated one first: theirs stands
        stored = await pool.fetchval(QUERIES["secret_get"], "operator_token")
        assert stored is not None
        return stored
    log.warning("operator_token_generated", note="printed once on stderr; only its hash is kept")
    print(
        f"\nwatchledger: generated the operator token (shown once; store it now):\n  {token}\n",
        file=sys.stderr,
        flush=True,
    )
    return digest
