"""``watchledger``: the one command-line entry point for operators.

Options default from environment variables; ``--help`` says which.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from eventstore import MigrationError, migrations
from eventstore import database as db

from .api import MIGRATION_PACKAGES
from .config import SETTINGS, Settings
from .logs import configure_logging
from .runtime import database, serve

log = structlog.get_logger(__name__)


def _env_help(field: str) -> str:
    setting = SETTINGS[field]
    default = f", default {setting.default}" if setting.default is not None else ""
    return f"{setting.help} (env {setting.env}{default})"


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("database")
    group.add_argument("--database-url", help=_env_help("database_url"))
    group.add_argument("--data-dir", help=_env_help("data_dir"))


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help=_env_help("log_level")
    )
    group.add_argument(
        "--log-format", choices=["auto", "json", "console"], help=_env_help("log_format")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchledger",
        description=(
            "Event-sourced watch state, history and sync for movies and TV, on an append-only "
            "PostgreSQL log. Without WATCHLEDGER_DATABASE_URL every command uses an embedded "
            "PostgreSQL kept in the data folder."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "serve",
        help="run the HTTP API and its workers (applies migrations first)",
        description="Run the HTTP API and its workers until SIGINT or SIGTERM.",
    )
    p.add_argument("--host", help=_env_help("host"))
    p.add_argument("--port", type=int, help=_env_help("port"))
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
    p.add_argument("suite", choices=["eventstore", "api", "servers", "all"], help="what to measure")
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
        "--ingest-requests",
        type=int,
        default=20,
        help="bulk ingest requests of --request-batch events (20)",
    )
    _add_database_options(p)
    _add_logging_options(p)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: getattr(args, key, None)
        for key in ("database_url", "data_dir", "host", "port", "log_level", "log_format")
    }
    return Settings.load(overrides=overrides)


async def _migrate(url: str, status_only: bool) -> int:
    conn = await db.connect(url)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"watchledger: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        with database(settings) as url:
            if args.command == "serve":
                asyncio.run(serve(settings, url))
                return 0
            if args.command == "migrate":
                return asyncio.run(_migrate(url, args.status))
            if args.command == "bench":
                from .bench import BenchOptions, run_bench

                options = BenchOptions(
                    **{f: getattr(args, f) for f in BenchOptions.__struct_fields__}
                )
                return asyncio.run(run_bench(args.suite, url, options))
    except MigrationError as exc:
        log.error("migration_failed", error=str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
