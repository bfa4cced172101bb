"""Settings: environment variables, overridden by command-line flags. One place, one type."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec
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
        "The operator's bearer token. Unset: one is generated at first start, printed once.",
    ),
    "pool_size": Setting("WATCHLEDGER_POOL_SIZE", "20", "Most database connections in the pool."),
    "shutdown_timeout": Setting(
        "WATCHLEDGER_SHUTDOWN_TIMEOUT", "30", "Seconds in-flight requests get to finish on stop."
    ),
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    data_dir: str = msgspec.field(default_factory=lambda: str(default_data_dir()))
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "auto"
    operator_token: str | None = None
    pool_size: int = 20
    shutdown_timeout: float = 30.0

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
    ) -> Settings:
        """Settings from ``env`` (default: the process environment), then ``overrides``
        (command-line flags; None values are ignored). Raises ValueError on a bad value."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for field, setting in SETTINGS.items():
            value = env.get(setting.env) or setting.default
            if value is not None:
                raw[field] = value
        raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid setting: {exc}") from exc
