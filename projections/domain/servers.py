"""Decisions on media servers: which may register. Pure.

(Sharing a server with another account is :mod:`.access`; what a server's report of an
action becomes is :func:`.actions.decide_server_action`.)
"""

from __future__ import annotations

import re

from eventstore import Event

from .errors import NotAServerVersion, ServerTooOld, UnknownServer
from .events import ServerRegistered, ServerTokenReplaced

# The first media server version that syncs watch state.
MIN_SERVER_VERSION = (1, 27, 2)
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[.\-+].*)?$")


def parse_version(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a media server version like ``1.32.5.7349-abc``."""
    match = _VERSION.match(version.strip())
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


def register_server(server_id: str, name: str, version: str, token_hash: str) -> list[Event]:
    """The event of a server's registration, for its owner's stream; raises
    :class:`NotAServerVersion` or :class:`ServerTooOld` for a version that cannot sync.
    (That the id is free is the registry's to say.)"""
    parsed = parse_version(version)
    if parsed is None:
        raise NotAServerVersion("not a media server version such as 1.32.5.7349")
    if parsed < MIN_SERVER_VERSION:
        raise ServerTooOld(
            f"version {version} is older than 1.27.2, the first that syncs watch state"
        )
    return [
        ServerRegistered(server_id=server_id, name=name, version=version, token_hash=token_hash)
    ]


def replace_server_token(owned: frozenset[str], server_id: str, token_hash: str) -> list[Event]:
    """The event of a new token for a server, for its owner's stream (``owned``: the servers
    the account owns); :class:`UnknownServer` when it owns no such server."""
    if server_id not in owned:
        raise UnknownServer(f"no server {server_id!r} of this account")
    return [ServerTokenReplaced(server_id=server_id, token_hash=token_hash)]
