"""Bearer tokens: minted with 256 random bits, stored only as SHA-256 hashes, compared in
constant time.

A token made here says whose it is: ``wlo.<secret>`` (a generated operator token),
``wla.<account id>.<secret>`` (an account). The id lets a request find the one hash to compare
against (a keyed lookup, which also routes on a distributed database) without ever storing or
logging the secret. An operator token set in ``WATCHLEDGER_OPERATOR_TOKEN`` may have any shape.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Literal

import asyncpg
import msgspec
import structlog

from eventstore.queries import load_queries

from .config import Settings
from .errors import ApiError
from .logs import console_format

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
    # A header's bytes that are not UTF-8 reach us as lone surrogates (and so may an
    # environment variable's): hash whatever was sent, never fail on it.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


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


async def operator_token_hash(pool: asyncpg.Pool[Any], settings: Settings) -> str:
    """The hash the operator's token must match. With ``WATCHLEDGER_OPERATOR_TOKEN`` set, its
    hash; otherwise the stored one, generating a token on first start and handing it over once,
    never in a log line: with console logs, in a banner on stderr; with JSON logs, in the file
    ``operator-token`` of the data folder (mode 0600; an existing one is never replaced:
    FileExistsError), with a log record saying where it is."""
    if settings.operator_token:
        return hash_token(settings.operator_token)
    hint = "read the operator token from this file, store it safely, then delete the file"
    token_file = await asyncio.to_thread(
        lambda: Path(settings.data_dir).expanduser() / "operator-token"
    )
    stored: str | None = await pool.fetchval(QUERIES["secret_get"], "operator_token")
    if stored is not None:
        if await asyncio.to_thread(token_file.exists):
            log.warning("operator_token_file_left", token_file=str(token_file), hint=hint)
        return stored
    console = console_format(settings.log_format)
    token, digest = new_token("operator")

    def write_token_file() -> bool:
        """The token in a new file only this user may read; False if the file exists."""
        token_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as out:
            out.write(f"{token}\n")
        return True

    def discard_token_file() -> None:
        if not console:
            token_file.unlink(missing_ok=True)

    # The file comes before the hash is stored: a hash is never kept whose token nobody has.
    if not console and not await asyncio.to_thread(write_token_file):
        stored = await pool.fetchval(QUERIES["secret_get"], "operator_token")
        if stored is not None:  # another process just generated one: theirs stands
            return stored
        raise FileExistsError(
            errno.EEXIST,
            "an earlier operator token file is in the way (never replaced): "
            "delete it and start again",
            str(token_file),
        )
    try:
        won: str | None = await pool.fetchval(QUERIES["secret_add"], "operator_token", digest)
    except BaseException:
        discard_token_file()
        raise
    if won is None:  # another process generated one first: theirs stands
        discard_token_file()
        stored = await pool.fetchval(QUERIES["secret_get"], "operator_token")
        assert stored is not None
        return stored
    if not console:
        log.warning("operator_token_generated", token_file=str(token_file), hint=hint)
        return digest
    log.warning("operator_token_generated", shown="once, in the banner on stderr")
    lines = [
        "watchledger: generated the operator token. It is shown this once;",
        "only its hash is kept. Store it now.",
        "",
        f"    {token}",
    ]
    width = max(len(line) for line in lines)  # the box fits 80 columns
    rule = "+" + "-" * (width + 4) + "+"
    box = [rule, *(f"|  {line.ljust(width)}  |" for line in lines), rule]
    # Straight to stderr, not through logging: no log line may ever carry a secret.
    print("", *box, "", sep="\n", file=sys.stderr, flush=True)
    return digest
