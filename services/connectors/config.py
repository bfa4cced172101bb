"""A connector's configuration: the TOML file of ``connectors.md``, secrets from the environment.

Every mistake is one line naming the key to fix (``users[1].account: …``), found at start; a
secret's value never appears in one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

MediaKind = Literal["plex", "jellyfin", "emby"]
# The name of an environment variable (what the shell accepts).
_VARIABLE = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ConfigError(ValueError):
    """The connector's configuration is wrong; the message names the key."""


class Secret:
    """A value read from an environment variable; never shown (repr, str, logs)."""

    __slots__ = ("_value", "variable")

    def __init__(self, variable: str, value: str) -> None:
        self.variable = variable
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(${self.variable})"

    __str__ = __repr__


class WatchledgerSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    url: str
    server_id: Annotated[str, msgspec.Meta(min_length=1)]
    token_env: Annotated[str, msgspec.Meta(pattern=_VARIABLE)] = "WATCHLEDGER_SERVER_TOKEN"  # noqa: S105 - a variable's name


class MediaServerSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    kind: MediaKind
    url: str
    token_env: Annotated[str, msgspec.Meta(pattern=_VARIABLE)]


class ListenSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8765
    secret_env: Annotated[str, msgspec.Meta(pattern=_VARIABLE)] | None = None


class UserSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    media_user: Annotated[str, msgspec.Meta(min_length=1)]
    account: Annotated[str, msgspec.Meta(min_length=1)]
    token_env: Annotated[str, msgspec.Meta(pattern=_VARIABLE)] | None = None


class ConfigFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The file as written (``connectors.md``, "Configuration")."""

    state_file: Annotated[str, msgspec.Meta(min_length=1)]
    watchledger: WatchledgerSection
    media_server: MediaServerSection
    users: Annotated[list[UserSection], msgspec.Meta(min_length=1)]
    poll_interval: Annotated[float, msgspec.Meta(ge=1)] = 300.0
    listen: ListenSection = msgspec.field(default_factory=ListenSection)


class User(msgspec.Struct, frozen=True):
    """A media-server user that syncs, and the watchledger account it syncs with."""

    media_user: str
    account: str
    token: Secret | None  # Plex: the user's own token, where the server's cannot act for them


class ConnectorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The checked configuration, secrets read."""

    path: Path
    state_file: Path
    poll_interval: float
    watchledger_url: str
    server_id: str
    server_token: Secret
    kind: MediaKind
    media_url: str
    media_token: Secret
    listen_host: str
    listen_port: int
    webhook_secret: Secret | None
    users: tuple[User, ...]


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> ConnectorConfig:
    """The configuration in ``path``, its secrets from ``env`` (default: the process's
    environment). Raises :class:`ConfigError`: one line naming the file and the key."""
    path = Path(path)
    env = os.environ if env is None else env
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    try:
        parsed = msgspec.toml.decode(raw, type=ConfigFile)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: {_key_first(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}")

    def secret(key: str, variable: str) -> Secret:
        value = env.get(variable)
        if not value:
            raise fail(key, f"the environment variable {variable} is not set (or is empty)")
        return Secret(variable, value)

    for key, url in (
        ("watchledger.url", parsed.watchledger.url),
        ("media_server.url", parsed.media_server.url),
    ):
        problem = _url_problem(url)
        if problem:
            raise fail(key, problem)

    users: list[User] = []
    seen_users: set[str] = set()
    for n, user in enumerate(parsed.users):
        key = f"users[{n}]"
        if user.media_user in seen_users:
            raise fail(f"{key}.media_user", f"{user.media_user!r} is mapped twice")
        seen_users.add(user.media_user)
        token = None
        if user.token_env is not None:
            if parsed.media_server.kind != "plex":
                raise fail(f"{key}.token_env", "a user's own token is for Plex servers only")
            token = secret(f"{key}.token_env", user.token_env)
        users.append(User(user.media_user, user.account, token))

    listen_secret = parsed.listen.secret_env
    return ConnectorConfig(
        path=path,
        state_file=(path.parent / parsed.state_file).resolve(),
        poll_interval=parsed.poll_interval,
        watchledger_url=parsed.watchledger.url.rstrip("/"),
        server_id=parsed.watchledger.server_id,
        server_token=secret("watchledger.token_env", parsed.watchledger.token_env),
        kind=parsed.media_server.kind,
        media_url=parsed.media_server.url.rstrip("/"),
        media_token=secret("media_server.token_env", parsed.media_server.token_env),
        listen_host=parsed.listen.host,
        listen_port=parsed.listen.port,
        webhook_secret=(
            None if listen_secret is None else secret("listen.secret_env", listen_secret)
        ),
        users=tuple(users),
    )


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http:// or https:// URL, got {url!r}"
    return None


_AT = re.compile(r"^(?P<message>.*) - at `\$\.?(?P<key>[^`]*)`$")


def _key_first(message: str) -> str:
    """msgspec's "Expected `int` - at `$.listen.port`" as "listen.port: expected `int`"."""
    match = _AT.match(message)
    if match is None:
        return message
    key = match.group("key") or "(the file)"
    text = match.group("message")
    return f"{key}: {text[:1].lower()}{text[1:]}"
