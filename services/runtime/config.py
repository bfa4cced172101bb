"""Settings: environment variables, overridden by command-line flags. One place, one type."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect
import platformdirs

LogFormat = Literal["auto", "json", "console"]


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("watchledger", appauthor=False))


class Setting(msgspec.Struct, frozen=True):
    """One setting: its environment variable, default and help line (used by ``--help``)."""

    env: str
    default: str | None
    help: str


# Every environment variable watchledger reads, in the order the README lists them.
SETTINGS: dict[str, Setting] = {
    "database_url": Setting(
        "WATCHLEDGER_DATABASE_URL",
        None,
        "PostgreSQL URL (15 or newer). Unset: an embedded PostgreSQL in the data folder.",
    ),
    "data_dir": Setting(
        "WATCHLEDGER_DATA_DIR",
        None,
        f"Folder of the embedded PostgreSQL's data (default {default_data_dir()}).",
    ),
    "host": Setting("WATCHLEDGER_HOST", "127.0.0.1", "Address the HTTP API listens on."),
    "port": Setting("WATCHLEDGER_PORT", "8080", "Port the HTTP API listens on."),
    "log_level": Setting("WATCHLEDGER_LOG_LEVEL", "info", "debug, info, warning or error."),
    "log_format": Setting(
        "WATCHLEDGER_LOG_FORMAT",
        "auto",
        "json, console, or auto (console on a terminal, JSON otherwise).",
    ),
    "operator_token": Setting(
        "WATCHLEDGER_OPERATOR_TOKEN",
        None,
        "The operator's bearer token. Unset: one is generated at first start and handed over"
        " once: a banner on stderr with console logs, the file operator-token in the data"
        " folder with JSON logs.",
    ),
    "pool_size": Setting("WATCHLEDGER_POOL_SIZE", "20", "Most database connections in the pool."),
    "shutdown_timeout": Setting(
        "WATCHLEDGER_SHUTDOWN_TIMEOUT", "30", "Seconds in-flight requests get to finish on stop."
    ),
    "header_timeout": Setting(
        "WATCHLEDGER_HEADER_TIMEOUT",
        "10",
        "Seconds a client gets to send a request's line and headers (from connecting, or from"
        " the first byte of a request on a kept-alive connection); then it is closed.",
    ),
    "body_timeout": Setting(
        "WATCHLEDGER_BODY_TIMEOUT",
        "30",
        "Seconds a client gets to send a whole request body; then 408 and the connection closes.",
    ),
    "keepalive_timeout": Setting(
        "WATCHLEDGER_KEEPALIVE_TIMEOUT",
        "15",
        "Seconds an idle kept-alive connection stays open between requests.",
    ),
    "max_connections": Setting(
        "WATCHLEDGER_MAX_CONNECTIONS",
        "1000",
        "Most client connections open at once; more are closed at once.",
    ),
    "max_streams_per_token": Setting(
        "WATCHLEDGER_MAX_STREAMS_PER_TOKEN",
        "4",
        "Most long-polls (and feed streams) one token may hold open at once; more get 429.",
    ),
    "stream_heartbeat": Setting(
        "WATCHLEDGER_STREAM_HEARTBEAT",
        "15",
        "Seconds between heartbeat comments on an idle feed stream (keeps proxies from closing "
        "it, and finds a client that went away).",
    ),
    "metrics_interval": Setting(
        "WATCHLEDGER_METRICS_INTERVAL",
        "5",
        "Seconds between samples of the figures /metrics shows that the database knows "
        "(projection lag, queued changes): a scrape never waits for the database.",
    ),
    "database_timeout": Setting(
        "WATCHLEDGER_DATABASE_TIMEOUT",
        "5",
        "Seconds a request waits for a database connection before answering 503.",
    ),
}


# Settings that only the environment (or a file it is read from) may give: a secret never goes
# on a command line, where `ps` and shell histories show it.
ENV_ONLY = frozenset({"operator_token"})


def flag(field: str) -> str | None:
    """The command-line flag of a setting (``--pool-size``), None for environment-only ones."""
    return None if field in ENV_ONLY else "--" + field.replace("_", "-")


class SettingError(ValueError):
    """A setting's value is not one it can take; says which variable and flag to fix (or
    ``env``, the variable it came from, when not the setting's own: its ``_FILE``)."""

    def __init__(self, field: str, value: object, expected: str, env: str | None = None) -> None:
        self.field = field
        env = env or SETTINGS[field].env
        option = flag(field)
        self.source = f"{env} ({option})" if option and not env.endswith("_FILE") else env
        # Never echo a secret's value, even a malformed one.
        got = "" if field in ENV_ONLY else f", got {value!r}"
        self.message = f"invalid setting {self.source}: expected {expected}{got}"
        super().__init__(f"{self.message} (Settings.{field})")


# The operator token guards every account: it must be a secret nobody guesses. Placeholders
# that examples ship (the Kubernetes example's CHANGE-ME among them) are refused by name.
MIN_OPERATOR_TOKEN = 32
_PLACEHOLDERS = ("changeme", "change-me", "change_me", "example", "password", "replace")
_RANDOM_TOKEN = (
    f"a long random secret (at least {MIN_OPERATOR_TOKEN} characters, such as the output of "
    "`openssl rand -hex 32`)"
)


def weak_operator_token(token: str) -> str | None:
    """Why ``token`` is not fit to be the operator's token; None when it is. (Its value is
    never part of the answer.)"""
    if len(token) < MIN_OPERATOR_TOKEN:
        return f"this one has {len(token)} characters"
    lowered = token.lower()
    placeholder = next((p for p in _PLACEHOLDERS if p in lowered), None)
    if placeholder is not None:
        return f"this one is a placeholder (it contains {placeholder!r})"
    if len(set(token)) < 10:
        return f"this one uses only {len(set(token))} different characters"
    return None


def _from_file(field: str, env: Mapping[str, str]) -> str | None:
    """The value of ``<VARIABLE>_FILE``'s file (its last line break dropped), if that is set:
    secrets mounted as files (Kubernetes and Compose secrets) need not sit in the environment.
    SettingError when both are set, or the file cannot be read."""
    setting = SETTINGS[field]
    file_env = f"{setting.env}_FILE"
    path = env.get(file_env)
    if not path:
        return None
    if env.get(setting.env):
        raise SettingError(field, None, f"only one of {setting.env} and {file_env}", file_env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SettingError(field, None, f"a readable file ({reason})", file_env) from exc
    return text.removesuffix("\n").removesuffix("\r")


def _expected(annotation: Any) -> str:
    """What a value of this type looks like, in an operator's words."""
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(annotation))
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        return " or ".join(_expected(a) for a in typing.get_args(annotation) if a is not type(None))
    info = msgspec.inspect.type_info(annotation)
    if isinstance(info, msgspec.inspect.IntType | msgspec.inspect.FloatType):
        kind = "an integer" if isinstance(info, msgspec.inspect.IntType) else "a number"
        if info.ge is not None and info.le is not None:
            return f"{kind} from {info.ge} to {info.le}"
        bounds = [
            f"{word} {bound}"
            for word, bound in (
                ("of at least", info.ge),
                ("above", info.gt),
                ("of at most", info.le),
                ("below", info.lt),
            )
            if bound is not None
        ]
        return " ".join([kind, *bounds])
    if isinstance(info, msgspec.inspect.StrType):
        return "text"
    return str(annotation)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    data_dir: str = msgspec.field(default_factory=lambda: str(default_data_dir()))
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "auto"
    operator_token: str | None = None
    pool_size: Annotated[int, msgspec.Meta(ge=1)] = 20
    shutdown_timeout: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    header_timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    body_timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    keepalive_timeout: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1000
    max_streams_per_token: Annotated[int, msgspec.Meta(ge=1)] = 4
    database_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    stream_heartbeat: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    metrics_interval: Annotated[float, msgspec.Meta(gt=0)] = 5.0

    def __post_init__(self) -> None:
        if self.operator_token is not None:
            weakness = weak_operator_token(self.operator_token)
            if weakness is not None:
                raise SettingError("operator_token", None, f"{_RANDOM_TOKEN}: {weakness}")

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
    ) -> Settings:
        """Settings from ``env`` (default: the process environment), then ``overrides``
        (command-line flags, as given: strings or values; None values are ignored). Raises
        :class:`SettingError` (a ValueError) naming the variable and flag of a bad value."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for field, setting in SETTINGS.items():
            value = _from_file(field, env) or env.get(setting.env) or setting.default
            if value is not None:
                raw[field] = value
        raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
        token = raw.get("operator_token")
        if isinstance(token, str) and (weakness := weak_operator_token(token)) is not None:
            # Here, not only in __post_init__: msgspec would turn its error into another.
            raise SettingError("operator_token", None, f"{_RANDOM_TOKEN}: {weakness}")
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            # Find the culprit field by field: the error's message only has a JSON path.
            for info in msgspec.structs.fields(cls):
                if info.name not in raw:
                    continue
                try:
                    msgspec.convert(raw[info.name], info.type, strict=False)
                except msgspec.ValidationError:
                    raise SettingError(info.name, raw[info.name], _expected(info.type)) from exc
            raise ValueError(f"invalid setting: {exc}") from exc
