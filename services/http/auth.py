"""Who is calling: a bearer token becomes a :class:`Principal` (the operator, an account or
a server); and the operator's token, set or generated once (tokens themselves:
:mod:`services.commands.tokens`)."""

from __future__ import annotations

import asyncio
import errno
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import structlog

from projections.domain import Account
from services.commands.tokens import PrincipalKind, hash_token, matches, new_token, parse_token
from services.runtime.config import Settings
from services.runtime.logs import console_format
from services.sql import QUERIES

from .errors import ApiError

log = structlog.get_logger(__name__)


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the operator, or an account or server by id."""

    kind: PrincipalKind
    id: str


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


class Authenticator:
    """Turns a bearer token into a :class:`Principal` (401 if it is nobody's)."""

    def __init__(
        self,
        operator_hash: Callable[[], Awaitable[str]],
        load_account: Callable[[str], Awaitable[Account | None]],
        server_token_hash: Callable[[str], Awaitable[str | None]],
    ) -> None:
        self._find_operator_hash = operator_hash
        self._operator_hash: str | None = None
        self._load_account = load_account
        self._server_token_hash = server_token_hash

    async def operator_hash(self) -> str:
        """The hash the operator's token must match (looked up, or made, once)."""
        if self._operator_hash is None:
            self._operator_hash = await self._find_operator_hash()
        return self._operator_hash

    async def resolve(self, authorization: str | None) -> tuple[Principal, Account | None]:
        token = bearer(authorization)
        # The operator's token is whatever WATCHLEDGER_OPERATOR_TOKEN says: any shape.
        if matches(token, await self.operator_hash()):
            return Principal("operator", "operator"), None
        claimed = parse_token(token)
        if claimed is not None:
            kind, owner = claimed
            if kind == "account" and owner is not None:
                account = await self._load_account(owner)
                if account is not None and matches(token, account.token_hash):
                    return Principal("account", account.id), account
            if kind == "server" and owner is not None:
                stored = await self._server_token_hash(owner)
                if stored is not None and matches(token, stored):
                    return Principal("server", owner), None
        raise unauthorized("the token is not valid")


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
