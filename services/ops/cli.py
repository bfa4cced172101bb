"""``watchledger``: the one command-line entry point for operators.

Every setting is an environment variable and (but secrets) a flag generated from the one
settings table; ``--help`` says which variable and default. A failure the operator can fix
(a busy port, an unreachable database) is one line naming the setting to change, exit 1; a bad
setting, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import re
import socket
import sys
import traceback
import typing
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Literal
from urllib.parse import unquote, urlsplit

import asyncpg
import msgspec
import msgspec.inspect
import structlog

from eventstore import EventStore, ImportFailed, MigrationError, migrations
from eventstore import database as db
from eventstore.exchange import IMPORT_CONCURRENCY, export_events, import_events
from services import MIGRATION_PACKAGES
from services.runtime import loop
from services.runtime.config import ENV_ONLY, SETTINGS, SettingError, Settings, flag
from services.runtime.embedded import database
from services.runtime.logs import configure_logging, console_format
from services.runtime.serve import serve
from services.runtime.version import VERSION

from .exchange import ImportRules
from .replaying import (
    ReplayError,
    chosen,
    projection_names,
    replay_summary,
    run_replay,
    run_verify,
    verify_summary,
)

log = structlog.get_logger(__name__)

# Settings every command takes; `serve` takes all of them (secrets excepted).
DATABASE_SETTINGS = ("database_url", "data_dir", "database_timeout")
LOGGING_SETTINGS = ("log_level", "log_format")
_TYPES = {f.name: f.type for f in msgspec.structs.fields(Settings)}
# Errors of reaching or using a database (TimeoutError and socket.gaierror are OSErrors).
_DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class CommandFailed(Exception):
    """The command could not do its work, for a reason the operator can fix."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _env_help(field: str) -> str:
    setting = SETTINGS[field]
    default = f", default {setting.default}" if setting.default is not None else ""
    return f"{setting.help} (env {setting.env}{default})".replace("%", "%%")


def _add_settings(parser: argparse.ArgumentParser, title: str, fields: Iterable[str]) -> None:
    """A flag for each setting (values stay strings: ``Settings.load`` converts and checks)."""
    group = parser.add_argument_group(title)
    for field in fields:
        option = flag(field)
        if option is None:
            continue
        annotation = _TYPES[field]
        metavar = None
        if typing.get_origin(annotation) is Literal:
            metavar = "{" + ",".join(str(v) for v in typing.get_args(annotation)) + "}"
        elif isinstance(
            msgspec.inspect.type_info(annotation),
            msgspec.inspect.IntType | msgspec.inspect.FloatType,
        ):
            metavar = "N"
        group.add_argument(option, dest=field, metavar=metavar, help=_env_help(field))


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    _add_settings(parser, "database", DATABASE_SETTINGS)


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    _add_settings(parser, "logging", LOGGING_SETTINGS)


def _environment_only() -> str:
    return "environment only (a secret never goes on a command line): " + "; ".join(
        f"{SETTINGS[field].env}: {SETTINGS[field].help}" for field in sorted(ENV_ONLY)
    ).replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchledger",
        description=(
            "Event-sourced watch state, history and sync for movies and TV, on an append-only "
            "PostgreSQL log. Without WATCHLEDGER_DATABASE_URL every command uses an embedded "
            "PostgreSQL kept in the data folder."
        ),
    )
    parser.add_argument("--version", action="version", version=f"watchledger {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "serve",
        help="run the HTTP API and its workers (applies migrations first)",
        description="Run the HTTP API and its workers until SIGINT or SIGTERM.",
        epilog=_environment_only(),
    )
    others = (*DATABASE_SETTINGS, *LOGGING_SETTINGS)
    _add_settings(p, "service", [f for f in SETTINGS if f not in others])
    _add_database_options(p)
    _add_logging_options(p)

    p = commands.add_parser(
        "migrate",
        help="apply pending schema migrations",
        description="Apply pending schema migrations and list what was applied.",
    )
    p.add_argument(
        "--status", action="store_true", help="only list pending migrations; exit 1 if any"
    )
    _add_database_options(p)
    _add_logging_options(p)

    p = commands.add_parser(
        "bench",
        help="measure throughput in a scratch database and print the figures",
        description=(
            "Benchmarks. Each runs in a scratch database created beside the configured one "
            "and dropped afterwards, so the real log is never touched."
        ),
    )
    p.add_argument(
        "suite",
        nargs="+",
        choices=["eventstore", "api", "servers", "feeds", "replay", "connectors", "load", "all"],
        help=(
            "what to measure, one suite or several (all: eventstore, api and servers; the "
            "others take minutes or a load generator; with --quick, all is every suite)"
        ),
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke sizes (every size option ignored): all suites in about a minute, for CI",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document of the figures (by suite) instead of tables",
    )
    p.add_argument(
        "--base-log",
        type=int,
        default=0,
        metavar="EVENTS",
        help="run api, servers and load on a log already holding about this many events (an "
        "account per 400, generated as the replay benchmark does, the projections replayed "
        "from it): how cost grows with the log (0: an empty log)",
    )
    log_options = p.add_argument_group("eventstore")
    log_options.add_argument("--writers", type=int, default=16, help="concurrent appenders (16)")
    log_options.add_argument(
        "--events", type=int, default=20_000, help="events a measurement (20000)"
    )
    log_options.add_argument("--batch", type=int, default=500, help="events a batched append (500)")
    api_options = p.add_argument_group("api (a `watchledger serve` child process)")
    api_options.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients (32)")
    api_options.add_argument(
        "--requests", type=int, default=5_000, help="one-action requests in all (5000)"
    )
    api_options.add_argument(
        "--request-batch", type=int, default=1_000, help="actions a batched request (1000)"
    )
    api_options.add_argument(
        "--request-batches", type=int, default=20, help="batched requests in all (20)"
    )
    api_options.add_argument(
        "--samples", type=int, default=200, help="latency samples of api and servers (200)"
    )
    server_options = p.add_argument_group("servers")
    server_options.add_argument(
        "--servers", type=int, default=100, help="servers long-polling (100)"
    )
    server_options.add_argument(
        "--queued",
        type=int,
        default=200_000,
        help="items waiting in an offline server's queue while propagation is timed (200000)",
    )
    server_options.add_argument(
        "--spread-accounts",
        type=int,
        default=1_000,
        help="accounts a server's bulk batches are spread over, in the wide ingest (1000)",
    )
    server_options.add_argument(
        "--ingest-requests",
        type=int,
        default=20,
        help="bulk ingest requests of --request-batch events (20)",
    )
    replay_options = p.add_argument_group("replay")
    replay_options.add_argument(
        "--log-events",
        type=int,
        default=2_000_000,
        help="events of the generated log replayed, exported and imported (2000000)",
    )
    replay_options.add_argument(
        "--accounts", type=int, default=5_000, help="accounts the log is spread over (5000)"
    )
    feed_options = p.add_argument_group("feeds (a `watchledger serve` child process)")
    feed_options.add_argument(
        "--friends", type=int, default=200, help="friends of the reading account (200)"
    )
    feed_options.add_argument(
        "--activities",
        type=int,
        default=1_000_000,
        help="activities its friends hold in all; as many again by non-friends (1000000)",
    )
    feed_options.add_argument(
        "--streams", type=int, default=10_000, help="idle feed streams held open (10000)"
    )
    feed_options.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        help="seconds the server's CPU is measured idle, without and with the streams (20)",
    )
    load_options = p.add_argument_group(
        "load (wrk and pgbench, installed from Debian's packages when missing)"
    )
    load_options.add_argument(
        "--load-accounts", type=int, default=2_000, help="accounts the actions rotate over (2000)"
    )
    load_options.add_argument(
        "--connections", type=int, default=32, help="wrk's open connections (32)"
    )
    load_options.add_argument(
        "--seconds", type=float, default=10.0, help="seconds of load, and of the ceiling (10)"
    )
    load_options.add_argument(
        "--mixed",
        action="store_true",
        help="beside the single actions: a server posting batches over 100 accounts while it "
        "long-polls its changes, and a reader of feed and history pages holding the feed's "
        "live stream open",
    )
    connector_options = p.add_argument_group(
        "connectors (fake Plex and Jellyfin servers; --samples server-to-server samples)"
    )
    connector_options.add_argument(
        "--items",
        type=int,
        default=10_000,
        help="items in the library a connector scans and uploads as a baseline (10000)",
    )
    _add_database_options(p)
    _add_logging_options(p)

    p = commands.add_parser(
        "replay",
        help="rebuild projections from the log and swap them in (or a point-in-time copy)",
        description=(
            "Rebuild projections from the event log into side tables, set-based, while the "
            "service keeps serving and writing, then swap them in atomically; the running "
            "service's projection runners catch up from the rebuilt position. Events a "
            "projection cannot apply are kept as dead letters (GET /v1/admin/projections); a "
            "replay retries them. With --until-position or --until-time, build a point-in-time "
            "copy into a schema of its own (--into) for inspection instead: the live tables are "
            "not touched. A progress bar on a terminal, progress lines otherwise; a summary "
            "at the end."
        ),
    )
    p.add_argument(
        "--projection",
        choices=[*projection_names(), "all"],
        default="all",
        help="the projection to rebuild (default: all)",
    )
    bound = p.add_mutually_exclusive_group()
    bound.add_argument(
        "--until-position",
        type=_position,
        metavar="N",
        help="a copy of the projections as the log stood at position N",
    )
    bound.add_argument(
        "--until-time",
        type=_time,
        metavar="T",
        help="a copy as the log stood at time T (ISO 8601 with a UTC offset)",
    )
    p.add_argument(
        "--into",
        metavar="SCHEMA",
        help="the schema of a point-in-time copy (default watchledger_as_of; replaced if it "
        "is an earlier copy, refused if it is anything else)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=2,
        metavar="N",
        help="connections a replay rebuilds on at once, the projections shared out among them "
        "(default 2; 1: one connection). Each is one database backend busy for the rebuild",
    )
    _add_database_options(p)
    _add_logging_options(p)

    p = commands.add_parser(
        "verify",
        help="compare the live projections with a rebuild from the log; exit 1 on a difference",
        description=(
            "Rebuild the projections from the log into side tables, bring them to where each "
            "live projection stands, and compare. Prints a summary of the differences (rows "
            "only in the live table, only in the rebuild, and the accounts concerned) and "
            "exits 1 on any; 0 when they agree. Changes nothing: `watchledger replay` repairs."
        ),
    )
    p.add_argument(
        "--projection",
        choices=[*projection_names(), "all"],
        default="all",
        help="the projection to verify (default: all)",
    )
    _add_database_options(p)
    _add_logging_options(p)

    p = commands.add_parser(
        "events",
        help="export the event log as NDJSON, or import such an export",
        description=(
            "Export the raw event log as NDJSON (one event a line, in position order), or "
            "import such an export into the configured database."
        ),
    )
    actions = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    e = actions.add_parser(
        "export",
        help="write the log as NDJSON on standard output",
        description=(
            "Write every event of the log on standard output, one JSON object a line, in "
            "position order: position, stream, version, event_id, type, schema_version, data, "
            "recorded_at, idempotency_keys. The export reads one consistent snapshot of the log."
        ),
    )
    e.add_argument(
        "--after",
        type=_position,
        default=0,
        metavar="N",
        help="only the events after position N (default 0: the whole log)",
    )
    _add_database_options(e)
    _add_logging_options(e)
    e = actions.add_parser(
        "import",
        help="append the events of an export (idempotent)",
        description=(
            "Append the events of an export to the configured database through the event "
            "store's append, each stream's in file order. Idempotent: an event whose id or "
            "idempotency key is stored already is skipped, so importing a file again changes "
            "nothing. Only event types this release knows are taken; a server's registry row "
            "is restored with its server_registered event. A bad line stops the import (exit "
            "1) naming it; the lines before it stay imported, and running it again after a "
            "fix is safe. A summary goes to standard error."
        ),
    )
    e.add_argument("file", metavar="FILE", help="the export to read, or - for standard input")
    _add_database_options(e)
    _add_logging_options(e)

    p = commands.add_parser(
        "connect",
        help="run a connector for one Plex, Jellyfin or Emby server",
        description=(
            "Bridge one media server to watchledger (connectors.md): take its webhooks on "
            "POST /webhook and poll its users' watch data, send what changed as the server's "
            "events, apply watchledger's changes to it, and upload baselines when asked. "
            "Runs until SIGINT or SIGTERM. Needs no database: it talks to watchledger's API "
            "and keeps its own state in the configuration's state_file (SQLite)."
        ),
        epilog=(
            "The configuration is TOML (see the README, 'Connectors'); its secrets come from "
            "the environment variables it names (token_env, secret_env), never from the file. "
            "Exit codes: 2, a configuration error (one line naming the key); 3, a side "
            "refused it (a token, a user the media server does not know: a restart cannot "
            "help); 1, a part of it stopped; 0, stopped by SIGINT or SIGTERM. The listener "
            "also serves GET /metrics (Prometheus) and GET /healthz."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the connector's TOML file")
    _add_logging_options(p)
    return parser


def _position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"expected a log position (0 or more), got {text!r}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"expected 1 to 16 connections, got {text!r}")
    return value


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"expected a time with a UTC offset, such as 2026-11-21T12:00:00+00:00, got {text!r}"
        )
    return value


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(overrides={field: getattr(args, field, None) for field in SETTINGS})


def mask_url(url: str) -> str:
    """``url`` with its password, if any (in the userinfo or a ``password`` parameter), as ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hosts = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
        query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return "(the configured URL, which cannot be parsed)"


def _scrub(message: str, url: str) -> str:
    """``message`` without the URL's password, wherever a library may have quoted it."""
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        for secret in {password, unquote(password or "")} - {None, ""}:
            assert secret is not None
            message = message.replace(secret, "***")
    return message


def _reason(exc: BaseException, settings: Settings) -> str:
    """Why a connection or a listening socket failed, in a few words."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {settings.database_timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror}"
    if isinstance(exc, OSError):
        code = exc.errno
        if code is None:  # asyncio's "Multiple exceptions: [Errno 111] ..." (several addresses)
            found = re.search(r"\[Errno (\d+)\]", str(exc))
            code = int(found[1]) if found else None
        if code is not None and code > 0:
            return os.strerror(code).lower()
    return str(exc) or type(exc).__name__


def _database_failure(exc: BaseException, settings: Settings, url: str) -> CommandFailed:
    if settings.database_url:
        fix = "check WATCHLEDGER_DATABASE_URL (or --database-url)"
    else:
        fix = f"check the embedded PostgreSQL in {settings.data_dir} (WATCHLEDGER_DATA_DIR)"
    if isinstance(exc, OSError) and exc.filename:  # a file of ours, not the database
        return CommandFailed(f"{exc.filename}: {exc.strerror}")
    if isinstance(exc, ValueError):  # asyncpg's verdict on the URL itself
        return CommandFailed(
            f"invalid setting WATCHLEDGER_DATABASE_URL (--database-url): {exc}", code=2
        )
    what = "cannot reach" if isinstance(exc, OSError) else "cannot use"
    return CommandFailed(
        f"{what} the database at {mask_url(url)} ({_reason(exc, settings)}) — {fix}"
    )


def _listen_failure(exc: BaseException, settings: Settings) -> CommandFailed:
    host, port = settings.host, settings.port
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    code = exc.errno if isinstance(exc, OSError) else None
    reason = _reason(exc, settings)
    if isinstance(exc, socket.gaierror) or code == errno.EADDRNOTAVAIL:
        fix = "set WATCHLEDGER_HOST or --host"
    elif code in (errno.EADDRINUSE, errno.EACCES):
        fix = "set WATCHLEDGER_PORT or --port"
        if code == errno.EACCES and port < 1024:
            reason += " (ports below 1024 need privileges)"
    else:
        fix = "check WATCHLEDGER_HOST and WATCHLEDGER_PORT (--host, --port)"
    return CommandFailed(f"cannot listen on {address}: {reason} — {fix}")


def _while_listening(exc: BaseException) -> bool:
    """Whether ``exc`` came from opening the listening socket rather than from setting up the
    database before it (``services.runtime.serve`` raises both as they come)."""
    frames = traceback.walk_tb(exc.__traceback__)
    return any(frame.f_code.co_name == "create_server" for frame, _ in frames)


async def _check_database(settings: Settings, url: str) -> None:
    """Connect once, within ``database_timeout``: an unreachable database is one clear line
    within seconds, not asyncpg's minute of waiting and a traceback."""
    try:
        conn = await asyncpg.connect(url, timeout=settings.database_timeout)
    except (*_DATABASE_ERRORS, ValueError) as exc:
        raise _database_failure(exc, settings, url) from exc
    await conn.close()


async def _serve(settings: Settings, url: str) -> None:
    await _check_database(settings, url)
    started = asyncio.Event()
    try:
        await serve(settings, url, started=started)
    except _DATABASE_ERRORS as exc:
        if started.is_set():  # not a start-up failure
            raise
        if _while_listening(exc):
            raise _listen_failure(exc, settings) from exc
        raise _database_failure(exc, settings, url) from exc


async def _migrate(settings: Settings, url: str, status_only: bool) -> int:
    try:
        conn = await db.connect(url, timeout=settings.database_timeout)
    except (*_DATABASE_ERRORS, ValueError) as exc:
        raise _database_failure(exc, settings, url) from exc
    try:
        if status_only:
            todo = await migrations.pending(conn, MIGRATION_PACKAGES)
            for m in todo:
                print(f"pending {m.label}")
            print(f"{len(todo)} pending")
            return 1 if todo else 0
        applied = await migrations.migrate(conn, MIGRATION_PACKAGES)
        for m in applied:
            print(f"applied {m.label}")
        print(f"{len(applied)} applied; schema up to date")
        return 0
    finally:
        await conn.close()


async def _connect_migrated(settings: Settings, url: str) -> asyncpg.Connection[typing.Any]:
    """A connection to the database, which must have every migration applied."""
    try:
        conn = await db.connect(url, timeout=settings.database_timeout)
        todo = await migrations.pending(conn, MIGRATION_PACKAGES)
    except (*_DATABASE_ERRORS, ValueError) as exc:
        raise _database_failure(exc, settings, url) from exc
    if todo:
        await conn.close()
        raise CommandFailed(f"{len(todo)} migrations pending — run watchledger migrate first")
    return conn


async def _export(settings: Settings, url: str, after: int) -> int:
    conn = await _connect_migrated(settings, url)
    try:
        count = await export_events(conn, sys.stdout.buffer, after=after)
    finally:
        await conn.close()
    log.info("events_exported", events=count, after=after)
    return 0


@contextlib.contextmanager
def _lines_of(path: str) -> Iterator[Iterable[bytes]]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below, around the import
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror}") from exc
    with file:
        yield file


async def _import(settings: Settings, url: str, path: str) -> int:
    await (await _connect_migrated(settings, url)).close()
    with _lines_of(path) as lines:
        pool = await db.create_pool(
            url, min_size=1, max_size=IMPORT_CONCURRENCY, acquire_timeout=settings.database_timeout
        )
        try:
            async with EventStore(pool) as store:
                summary = await import_events(store, lines, rules=ImportRules())
        except ImportFailed as exc:
            raise CommandFailed(str(exc)) from exc
        finally:
            await pool.close()
    line = (
        f"imported {summary.imported} events ({summary.duplicates} already present) "
        f"from {summary.lines} lines in {summary.seconds:.1f} s"
    )
    if console_format(settings.log_format):
        print(line, file=sys.stderr, flush=True)
    else:  # the stream stays JSON lines
        log.info("events_imported", summary=line, **msgspec.structs.asdict(summary))
    return 0


async def _replay(settings: Settings, url: str, args: argparse.Namespace) -> int:
    conn = await _connect_migrated(settings, url)
    copied = args.until_position is not None or args.until_time is not None or bool(args.into)
    try:
        report = await run_replay(
            conn,
            chosen(args.projection),
            until_position=args.until_position,
            until_time=args.until_time,
            into=args.into,
            connect=lambda: db.connect(url, timeout=settings.database_timeout),
            workers=args.workers,
        )
    except ReplayError as exc:
        raise CommandFailed(str(exc)) from exc
    finally:
        await conn.close()
    _say(replay_summary(report, copied=copied), settings)
    return 0


async def _verify(settings: Settings, url: str, projection: str) -> int:
    conn = await _connect_migrated(settings, url)
    try:
        report = await run_verify(conn, chosen(projection))
    except ReplayError as exc:
        raise CommandFailed(str(exc)) from exc
    finally:
        await conn.close()
    for line in verify_summary(report):
        _say(line, settings)
    return 0 if report.ok else 1


def _connect(path: str, settings: Settings) -> int:
    """``watchledger connect``: a configuration error is one line, exit 2; a side that refuses
    the connector (a token, a user it does not know) one line, exit 3 (a restart cannot help
    either); a part of it that stopped, exit 1."""
    from services.connectors.config import ConfigError, load_config
    from services.connectors.model import MediaServerRefused
    from services.connectors.run import opened, run
    from services.connectors.state import StateError
    from services.connectors.upstream import WatchledgerRefused
    from services.runtime.supervisor import BackgroundTaskDied

    try:
        config = load_config(path)
    except ConfigError as exc:
        _report(str(exc), settings)
        return 2

    async def connect() -> None:
        async with opened(config) as connector:
            await run(connector)

    try:
        loop.run(connect())
    except StateError as exc:
        _report(f"state_file: {exc}", settings)
        return 2
    except BackgroundTaskDied as exc:
        _report(f"the connector stopped: {exc} (its log says why)", settings)
        return 1
    except MediaServerRefused as exc:
        _report(f"the {config.kind} server refused the connector: {exc}", settings)
        return 3
    except WatchledgerRefused as exc:
        _report(
            f"watchledger refused the connector: {exc} (check watchledger.server_id and the "
            f"token in ${config.server_token.variable})",
            settings,
        )
        return 3
    except OSError as exc:
        _report(f"cannot listen on {config.listen_host}:{config.listen_port}: {exc}", settings)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _say(line: str, settings: Settings) -> None:
    """A result line: plain on stderr for a person, a log record when logs are JSON lines."""
    if console_format(settings.log_format):
        print(line, file=sys.stderr, flush=True)
    else:
        log.info("command_result", summary=line)


def _report(message: str, settings: Settings) -> None:
    """One line on stderr: plain for a person, a log record when logs are JSON lines."""
    if console_format(settings.log_format):
        print(f"watchledger: {message}", file=sys.stderr, flush=True)
    else:
        log.error("command_failed", error=message)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingError as exc:
        print(f"watchledger: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"watchledger: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "connect":
        return _connect(args.config, settings)
    try:
        with contextlib.ExitStack() as stack:
            try:
                url = stack.enter_context(database(settings))
            except OSError as exc:
                if not exc.filename:
                    raise
                raise CommandFailed(
                    f"cannot use the data folder: {exc.filename}: {exc.strerror}"
                    " — set WATCHLEDGER_DATA_DIR or --data-dir"
                ) from exc
            if args.command == "serve":
                loop.run(_serve(settings, url))
                return 0
            if args.command == "migrate":
                return asyncio.run(_migrate(settings, url, args.status))
            if args.command == "bench":
                from .bench import BenchOptions, run_bench

                options = BenchOptions(
                    **{f: getattr(args, f) for f in BenchOptions.__struct_fields__}
                )
                asyncio.run(_check_database(settings, url))
                return asyncio.run(
                    run_bench(args.suite, url, options, quick=args.quick, as_json=args.json)
                )
            if args.command == "replay":
                return asyncio.run(_replay(settings, url, args))
            if args.command == "verify":
                return asyncio.run(_verify(settings, url, args.projection))
            if args.command == "events":
                if args.events_command == "export":
                    return asyncio.run(_export(settings, url, args.after))
                return asyncio.run(_import(settings, url, args.file))
    except MigrationError as exc:
        log.error("migration_failed", error=str(exc))
        return 1
    except CommandFailed as exc:
        _report(_scrub(str(exc), settings.database_url or ""), settings)
        return exc.code
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
