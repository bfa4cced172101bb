"""Bearer tokens: minted with 256 random bits, stored only as SHA-256 hashes, compared in
constant time.

A token made here says whose it is: ``wlo.<secret>`` (a generated operator token),
``wla.<account id>.<secret>`` (an account), ``wls.<server id>.<secret>`` (a server). The id
lets a request find the one hash to compare against (a keyed lookup, which also routes on a
distributed database) without ever storing or logging the secret. An operator token set in
``WATCHLEDGER_OPERATOR_TOKEN`` may have any shape.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

PrincipalKind = Literal["operator", "account", "server"]
_PREFIX: dict[PrincipalKind, str] = {"operator": "wlo", "account": "wla", "server": "wls"}
_KIND: dict[str, PrincipalKind] = {"wlo": "operator", "wla": "account", "wls": "server"}


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
