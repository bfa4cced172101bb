"""A new operator's first minutes: settings and flags, start-up failures in one line, a quiet
first start, and the generated operator token handed over without ever reaching a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import msgspec.inspect
import pytest
import structlog

from services.commands.tokens import hash_token
from services.http import auth
from services.http.auth import operator_token_hash
from services.ops import cli
from services.runtime.config import ENV_ONLY, SETTINGS, Settings, flag
from services.runtime.logs import configure_logging
from tests.api import OPERATOR_TOKEN

WATCHLEDGER = str(Path(sys.executable).with_name("watchledger"))
TYPES = {f.name: f.type for f in msgspec.structs.fields(Settings)}
# Settings whose values are checked (numbers, choices): "abc" is never one of them.
CHECKED = [
    field
    for field in SETTINGS
    if not isinstance(
        msgspec.inspect.type_info(TYPES[field]),
        msgspec.inspect.StrType | msgspec.inspect.UnionType,
    )
]


pytestmark = pytest.mark.usefixtures("cli_isolated")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``watchledger ARGS`` in a child process: (exit code, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WATCHLEDGER_")}
    proc = await asyncio.create_subprocess_exec(
        WATCHLEDGER,
        *args,
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --- 2. a bad setting names its variable and its flag ---------------------------------------


@pytest.mark.parametrize("field", CHECKED)
def test_a_bad_value_in_the_environment_names_the_variable_and_the_flag(
    field: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SETTINGS[field].env, "abc")

    assert cli.main(["serve"]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"watchledger: invalid setting {SETTINGS[field].env} ({flag(field)}): ")
    assert err.rstrip().endswith("got 'abc'")
    assert "$." not in err  # no msgspec path
    assert "expected an integer" in err or "expected a number" in err or "one of" in err


@pytest.mark.parametrize("field", CHECKED)
def test_a_bad_flag_names_the_variable_and_the_flag(
    field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    option = flag(field)
    assert option is not None

    assert cli.main(["serve", option, "abc"]) == 2

    err = capsys.readouterr().err
    assert err == (
        f"watchledger: invalid setting {SETTINGS[field].env} ({option}): "
        f"{err.split(': ', 2)[2].rstrip()}\n"
    )
    assert "got 'abc'" in err


def test_bad_values_are_described_from_their_type() -> None:
    def message(env: str, value: str) -> str:
        with pytest.raises(ValueError, match="invalid setting") as raised:
            Settings.load({env: value})
        return str(getattr(raised.value, "message", raised.value))

    assert message("WATCHLEDGER_PORT", "abc") == (
        "invalid setting WATCHLEDGER_PORT (--port): expected an integer from 0 to 65535, got 'abc'"
    )
    assert message("WATCHLEDGER_PORT", "70000").endswith("from 0 to 65535, got '70000'")
    assert message("WATCHLEDGER_POOL_SIZE", "0").endswith("an integer of at least 1, got '0'")
    assert message("WATCHLEDGER_SHUTDOWN_TIMEOUT", "soon").endswith(
        "a number of at least 0, got 'soon'"
    )
    assert message("WATCHLEDGER_LOG_LEVEL", "loud").endswith(
        "one of debug, info, warning, error, got 'loud'"
    )


# --- 5. every setting is a flag of serve (secrets excepted), from the one table -------------


def test_every_setting_but_the_secrets_is_a_serve_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    for field in SETTINGS:
        option = flag(field)
        if field in ENV_ONLY:
            assert option is None
            continue
        assert option is not None
        args = parser.parse_args(["serve", option, "7"])
        assert getattr(args, field) == "7", field  # a string: Settings.load converts it
    with pytest.raises(SystemExit):  # a secret never goes on a command line
        parser.parse_args(["serve", "--operator-token", "x"])
    assert "unrecognized arguments: --operator-token" in capsys.readouterr().err
    assert sorted(ENV_ONLY) == ["operator_token"]


def test_flags_reach_the_settings() -> None:
    parser = cli.build_parser()
    argv = ["serve", "--pool-size", "7", "--body-timeout", "2.5", "--log-level", "debug"]
    settings = cli._settings(parser.parse_args(argv))
    assert (settings.pool_size, settings.body_timeout, settings.log_level) == (7, 2.5, "debug")


def test_serve_help_names_every_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    for field, setting in SETTINGS.items():
        assert setting.env in out, field
        if setting.default is not None:
            assert f"default {setting.default}" in out, field


@pytest.mark.parametrize("command", [["migrate"], ["bench", "all"]])
def test_migrate_and_bench_take_the_database_and_logging_settings(command: list[str]) -> None:
    parser = cli.build_parser()
    for field in (*cli.DATABASE_SETTINGS, *cli.LOGGING_SETTINGS):
        option = flag(field)
        assert option is not None
        assert getattr(parser.parse_args([*command, option, "x"]), field) == "x"


# --- 1. start-up failures: one line, the setting to change, exit 1 --------------------------


def test_urls_are_shown_without_their_password() -> None:
    assert cli.mask_url("postgresql://ann:s3cret@db.example:5432/wl") == (
        "postgresql://ann:***@db.example:5432/wl"
    )
    assert cli.mask_url("postgresql://ann@db/wl?password=s3cret&sslmode=require") == (
        "postgresql://ann@db/wl?password=***&sslmode=require"
    )
    assert cli.mask_url("postgresql://ann:p%40ss@h/wl") == "postgresql://ann:***@h/wl"
    assert cli.mask_url("postgresql://db/wl") == "postgresql://db/wl"


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["bench", "eventstore"]])
def test_an_unreachable_database_is_one_line_and_exit_1(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://ann:s3cret@127.0.0.1:{_closed_port()}/wl"

    assert cli.main([*command, "--database-url", url, "--log-format", "console"]) == 1

    err = capsys.readouterr().err
    assert err == (
        f"watchledger: cannot reach the database at {url.replace('s3cret', '***')} "
        "(connection refused) — check WATCHLEDGER_DATABASE_URL (or --database-url)\n"
    )


async def test_serve_with_an_unreachable_database_prints_no_traceback_and_no_password() -> None:
    url = f"postgresql://ann:s3cret@127.0.0.1:{_closed_port()}/wl"

    code, out, err = await _run(
        "serve", "--log-format", "console", env={"WATCHLEDGER_DATABASE_URL": url}
    )

    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"watchledger: cannot reach the database at {url.replace('s3cret', '***')} "
        "(connection refused) — check WATCHLEDGER_DATABASE_URL (or --database-url)"
    ]


@pytest.mark.parametrize("command", ["serve", "migrate"])
async def test_a_database_that_never_answers_fails_within_the_database_timeout(
    command: str,
) -> None:
    # Listening, so connections are accepted by the kernel, but nobody ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://127.0.0.1:{silent.getsockname()[1]}/wl"
        started = time.monotonic()
        code, _, err = await _run(
            command,
            "--database-url",
            url,
            "--database-timeout",
            "1",
            "--log-format",
            "console",
        )
        took = time.monotonic() - started

    assert code == 1
    assert took < 10  # asyncpg's own default would be 60 s
    assert err.splitlines() == [
        f"watchledger: cannot reach the database at {url} (no answer within 1 s)"
        " — check WATCHLEDGER_DATABASE_URL (or --database-url)"
    ]


@pytest.mark.parametrize("fmt", ["console", "json"])
async def test_a_busy_port_is_one_line_naming_the_port_setting(database_url: str, fmt: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = await _run(
            "serve",
            "--port",
            str(port),
            "--log-format",
            fmt,
            "--log-level",
            "warning",
            env={
                "WATCHLEDGER_DATABASE_URL": database_url,
                "WATCHLEDGER_OPERATOR_TOKEN": OPERATOR_TOKEN,
            },
        )

    message = (
        f"cannot listen on 127.0.0.1:{port}: address already in use"
        " — set WATCHLEDGER_PORT or --port"
    )
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    if fmt == "console":
        assert lines == [f"watchledger: {message}"]
    else:  # JSON logs stay JSON lines
        record = json.loads(lines[0])
        assert (record["event"], record["level"], record["error"]) == (
            "command_failed",
            "error",
            message,
        )


async def test_an_address_not_on_this_machine_names_the_host_setting(database_url: str) -> None:
    code, _, err = await _run(
        "serve",
        "--host",
        "192.0.2.1",  # TEST-NET-1: never assigned to a machine
        "--port",
        str(_closed_port()),
        "--log-format",
        "console",
        "--log-level",
        "warning",
        env={
            "WATCHLEDGER_DATABASE_URL": database_url,
            "WATCHLEDGER_OPERATOR_TOKEN": OPERATOR_TOKEN,
        },
    )

    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith("watchledger: cannot listen on 192.0.2.1:")
    assert err.rstrip().endswith("— set WATCHLEDGER_HOST or --host")


def test_an_unusable_data_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "data"

    assert cli.main(["migrate", "--data-dir", str(data_dir), "--log-format", "console"]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("watchledger: cannot use the data folder: ")
    assert err.rstrip().endswith("— set WATCHLEDGER_DATA_DIR or --data-dir")


# --- 3. a quiet first start ------------------------------------------------------------------


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("warning", False), ("debug", True)])
def test_embedded_postgres_narration_shows_only_at_debug(level: str, shown: bool) -> None:
    stream = io.StringIO()
    configure_logging(level, "json", stream=stream)
    chatty = logging.getLogger("embedded_postgres")
    chatty.info("Running commandline: initdb ...")
    chatty.warning("Failed to stop server, killing it instead.")

    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert ("Running commandline: initdb ..." in events) is shown
    assert "Failed to stop server, killing it instead." in events  # never silenced


async def test_a_first_start_is_json_lines_only_without_the_token_and_without_narration(
    tmp_path: Path,
) -> None:
    """A first start into a fresh data folder with JSON logs: every line is a JSON record,
    none of them embedded-postgres' narration, and the generated token is in a file."""
    port = _closed_port()
    env = {**os.environ, "WATCHLEDGER_DATA_DIR": str(tmp_path), "WATCHLEDGER_DATABASE_URL": ""}
    env.pop("WATCHLEDGER_OPERATOR_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        WATCHLEDGER,
        "serve",
        "--port",
        str(port),
        "--log-format",
        "json",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(90):
            while True:
                line = await proc.stdout.readline()
                assert line, f"serve exited before it was ready: {b''.join(lines)!r}"
                lines.append(line)
                if b'"serving"' in line:
                    break
        token_file = tmp_path / "operator-token"
        token = token_file.read_text().strip()
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{port}/v1/admin/projections",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status == 200
    finally:
        proc.terminate()
        async with asyncio.timeout(60):
            rest, _ = await proc.communicate()
    lines.extend(rest.splitlines(keepends=True))

    records = [json.loads(line) for line in lines]  # every line is JSON
    assert not [r for r in records if r.get("logger") == "embedded_postgres"]
    assert token.startswith("wlo.")
    assert token not in b"".join(lines).decode()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    generated = [r for r in records if r["event"] == "operator_token_generated"]
    assert len(generated) == 1
    assert generated[0]["token_file"] == str(token_file)
    assert "delete" in generated[0]["hint"]
    # A line a migration applied, and a dozen more (~45 lines of initdb / pg_ctl narration before).
    assert len([r for r in records if r["event"] != "migration_applied"]) <= 15


# --- 4. the generated operator token never reaches a log line -------------------------------


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The process's log records, as JSON lines."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    # A fresh proxy: one cached under an earlier configuration would write elsewhere.
    monkeypatch.setattr(auth, "log", structlog.get_logger("services.auth"))
    return stream


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_with_json_logs_the_token_goes_to_a_private_file_and_never_to_the_stream(
    pool: asyncpg.Pool[Any],
    tmp_path: Path,
    log_stream: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), log_format="json")

    digest = await operator_token_hash(pool, settings)

    token_file = tmp_path / "data" / "operator-token"
    token = token_file.read_text().strip()
    assert hash_token(token) == digest
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    captured = capsys.readouterr()
    assert token not in captured.err + captured.out + log_stream.getvalue()
    assert [r for r in _records(log_stream) if r["event"] == "operator_token_generated"] == [
        {
            "token_file": str(token_file),
            "hint": "read the operator token from this file, store it safely, then delete the file",
            "event": "operator_token_generated",
            "level": "warning",
            "logger": "services.auth",
            "timestamp": _records(log_stream)[-1]["timestamp"],
        }
    ]

    # Later starts find the stored hash, and remind the operator of a file still there.
    assert await operator_token_hash(pool, settings) == digest
    assert _records(log_stream)[-1]["event"] == "operator_token_file_left"
    token_file.unlink()
    logged = len(_records(log_stream))
    assert await operator_token_hash(pool, settings) == digest
    assert len(_records(log_stream)) == logged


async def test_an_existing_token_file_is_never_replaced(
    pool: asyncpg.Pool[Any], tmp_path: Path, log_stream: io.StringIO
) -> None:
    (tmp_path / "operator-token").write_text("wlo.an-earlier-token\n")
    settings = Settings(data_dir=str(tmp_path), log_format="json")

    with pytest.raises(FileExistsError) as refused:
        await operator_token_hash(pool, settings)

    assert refused.value.filename == str(tmp_path / "operator-token")
    assert "delete it" in str(refused.value.strerror)
    assert (tmp_path / "operator-token").read_text() == "wlo.an-earlier-token\n"
    # Nothing was stored: the next start, with the file gone, generates one.
    assert await pool.fetchval("SELECT count(*) FROM service_secrets") == 0


async def test_with_console_logs_the_token_is_a_banner_on_stderr_and_not_a_log_line(
    pool: asyncpg.Pool[Any],
    tmp_path: Path,
    log_stream: io.StringIO,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(data_dir=str(tmp_path), log_format="console")

    digest = await operator_token_hash(pool, settings)

    err = capsys.readouterr().err
    banner = [line for line in err.splitlines() if line.strip()]
    assert banner[0] == banner[-1]
    assert banner[0].startswith("+--")
    assert banner[0].endswith("--+")
    assert all(line.startswith("|") and line.endswith("|") for line in banner[1:-1])
    assert len({len(line) for line in banner}) == 1  # a closed box
    assert len(banner[0]) <= 80  # that a terminal does not wrap
    tokens = [word for line in banner for word in line.split() if word.startswith("wlo.")]
    assert len(tokens) == 1
    assert hash_token(tokens[0]) == digest
    assert tokens[0] not in log_stream.getvalue()
    assert "operator_token_generated" in log_stream.getvalue()
    assert not (tmp_path / "operator-token").exists()  # shown once, kept nowhere

    assert await operator_token_hash(pool, settings) == digest
    assert capsys.readouterr().err == ""  # once


async def test_a_configured_operator_token_is_neither_shown_nor_written(
    pool: asyncpg.Pool[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = "an-operators-own-token-5e0c9b27f4a8d163"
    settings = Settings(data_dir=str(tmp_path), log_format="json", operator_token=mine)

    assert await operator_token_hash(pool, settings) == hash_token(mine)

    assert capsys.readouterr().err == ""
    assert not (tmp_path / "operator-token").exists()


def test_console_tracebacks_never_show_local_variables() -> None:
    """A logged exception in console mode shows where it happened, not the values: a frame's
    locals can hold a bearer token (rich, when installed, would print them)."""
    import io

    import structlog

    from services.runtime.logs import configure_logging

    stream = io.StringIO()
    configure_logging("info", "console", stream=stream)

    def handler(authorization: str) -> None:
        raise RuntimeError("boom")

    secret = "SECRET" * 2  # made at run time: a source line shown in a traceback cannot hold it
    try:
        handler(f"Bearer wla.ann.{secret}")
    except RuntimeError:
        structlog.get_logger("test").exception("request_failed")
    output = stream.getvalue()
    assert "request_failed" in output
    assert "RuntimeError" in output
    assert "SECRETSECRET" not in output
