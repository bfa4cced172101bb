"""The running service: health and readiness over real HTTP, the CLI, settings and logs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from services.ops import cli
from services.runtime.config import Settings
from services.runtime.logs import configure_logging
from tests.test_migrations import ALL_MIGRATIONS

WATCHLEDGER = str(Path(sys.executable).with_name("watchledger"))


async def test_healthz_and_readyz_answer_when_all_is_well(
    make_client: Callable[..., Any], database_url: str
) -> None:
    client = await make_client(database_url)

    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["status"] == "ok"

    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready"}


async def test_readyz_is_503_while_migrations_are_pending(
    make_client: Callable[..., Any], make_database: Callable[..., Any]
) -> None:
    client = await make_client(await make_database(migrated=False), migrate=False)

    ready = await client.get("/readyz")

    assert ready.status == 503
    body = await ready.json()
    assert body["reason"] == "migrations_pending"
    assert body["pending"] == ALL_MIGRATIONS
    assert (await client.get("/healthz")).status == 200


async def test_readyz_is_503_when_the_database_is_gone(
    make_client: Callable[..., Any], server_url: str, make_database: Callable[..., Any]
) -> None:
    url = await make_database()
    client = await make_client(url)
    assert (await client.get("/readyz")).status == 200

    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await admin.close()

    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["reason"] == "database_unreachable"
    assert (await client.get("/healthz")).status == 200


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "migrate", "bench"):
        assert command in out


@pytest.mark.parametrize("command", ["serve", "migrate", "bench"])
def test_command_help_names_the_environment_variables(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert "WATCHLEDGER_DATABASE_URL" in out
    assert "WATCHLEDGER_DATA_DIR" in out


async def test_migrate_command(
    make_database: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url = await make_database(migrated=False)

    def run(*args: str) -> int:
        return cli.main(["migrate", "--database-url", url, "--log-format", "json", *args])

    assert await asyncio.to_thread(run, "--status") == 1
    assert f"{len(ALL_MIGRATIONS)} pending" in capsys.readouterr().out
    assert await asyncio.to_thread(run) == 0
    assert "applied eventstore/0001_event_log" in capsys.readouterr().out
    assert await asyncio.to_thread(run) == 0
    assert "0 applied" in capsys.readouterr().out
    assert await asyncio.to_thread(run, "--status") == 0


def test_settings_come_from_the_environment_and_flags_override() -> None:
    env = {
        "WATCHLEDGER_PORT": "9001",
        "WATCHLEDGER_HOST": "::1",
        "WATCHLEDGER_LOG_LEVEL": "debug",
    }
    settings = Settings.load(env, {"port": 9002, "host": None})
    assert settings.port == 9002
    assert settings.host == "::1"
    assert settings.log_level == "debug"
    assert settings.database_url is None
    assert Settings.load({}).port == 8080


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WATCHLEDGER_PORT": "eighty"}, "port"),
        ({"WATCHLEDGER_LOG_LEVEL": "loud"}, "log_level"),
        ({"WATCHLEDGER_LOG_FORMAT": "xml"}, "log_format"),
    ],
)
def test_bad_settings_are_refused_clearly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.load(env)


def test_the_cli_reports_a_bad_setting_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHLEDGER_PORT", "eighty")
    assert cli.main(["migrate"]) == 2
    assert "invalid setting" in capsys.readouterr().err


def test_logs_are_json_lines_off_a_terminal() -> None:
    import structlog

    stream = io.StringIO()
    configure_logging("info", "auto", stream=stream)
    try:
        structlog.get_logger("test").info("projection_applied", projection="state", position=7)
        import logging

        logging.getLogger("aiohttp.access").info("a standard library record")
    finally:
        configure_logging("info", "console")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "projection_applied"
    assert lines[0]["position"] == 7
    assert lines[0]["level"] == "info"
    assert "timestamp" in lines[0]
    assert lines[1]["event"] == "a standard library record"
    assert lines[1]["logger"] == "aiohttp.access"


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `watchledger` started here keeps its data folder (and a generated operator
    token) in the test's own folder, never in the user's."""
    monkeypatch.setenv("WATCHLEDGER_DATA_DIR", str(tmp_path / "data"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _serve_until_ready(
    env: dict[str, str], *, before: list[bytes] | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    """Start `watchledger serve`; return once it listens (lines printed until then go to
    ``before``)."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        WATCHLEDGER,
        "serve",
        "--port",
        str(port),
        "--log-format",
        "json",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        # The process says when it listens: wait for that line rather than poll.
        while True:
            line = await proc.stdout.readline()
            assert line, "serve exited before it was ready"
            if line.startswith(b"{") and json.loads(line).get("event") == "serving":
                break
            if before is not None:
                before.append(line)
    return proc, port


async def _stop(proc: asyncio.subprocess.Process, sig: int) -> list[dict[str, Any]]:
    proc.send_signal(sig)
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        rest = await proc.stdout.read()
        code = await proc.wait()
    assert code == 0
    return [json.loads(line) for line in rest.splitlines() if line.startswith(b"{")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serve_answers_readyz_and_stops_cleanly_on_a_signal(
    database_url: str, sig: int
) -> None:
    proc, port = await _serve_until_ready({"WATCHLEDGER_DATABASE_URL": database_url})
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as ready,
        ):
            assert ready.status == 200
    finally:
        events = [e["event"] for e in await _stop(proc, sig)]
    assert "stopping" in events
    assert events[-1] == "stopped"


async def test_serve_with_no_database_configured_runs_and_stops_an_embedded_one(
    tmp_path: Path,
) -> None:
    env = {"WATCHLEDGER_DATA_DIR": str(tmp_path), "WATCHLEDGER_DATABASE_URL": ""}
    proc, port = await _serve_until_ready(env)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/readyz") as ready,
    ):
        assert ready.status == 200
    events = await _stop(proc, signal.SIGTERM)
    assert "embedded_postgres_stopped" in [e["event"] for e in events]
    assert not (tmp_path / "postgres-18" / "postmaster.pid").exists()
    assert (tmp_path / "postgres-18" / "PG_VERSION").exists()  # the data stays

    # A second start finds the data folder and its migrated database again.
    proc, port = await _serve_until_ready(env)
    events = await _stop(proc, signal.SIGTERM)
    assert "migration_applied" not in [e["event"] for e in events]


async def test_in_flight_requests_finish_when_serve_is_told_to_stop(database_url: str) -> None:
    """SIGTERM while a request is inside its handler (held there by a lock its append needs):
    the request still gets its 200, then the process exits 0. (A request still *uploading* its
    body when shutdown begins is cut by aiohttp, which stops reading: aio-libs/aiohttp#2298.)"""
    token = "shutdown-test-operator-4b1e9d07c2a85f63"
    proc, port = await _serve_until_ready(
        {"WATCHLEDGER_DATABASE_URL": database_url, "WATCHLEDGER_OPERATOR_TOKEN": token}
    )
    base = f"http://127.0.0.1:{port}"
    blocker = await asyncpg.connect(database_url)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/v1/accounts",
                json={"id": "ann", "kind": "full", "name": "Ann"},
                headers={"Authorization": f"Bearer {token}"},
            ) as created:
                ann = {"Authorization": f"Bearer {(await created.json())['token']}"}
            hold = blocker.transaction()
            await hold.start()
            await blocker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            body = {
                "actions": [{"type": "watched", "guid": "plex://movie/5d776825880197001ec967c6"}]
            }
            in_flight = asyncio.create_task(
                http.post(f"{base}/v1/me/actions", json=body, headers=ann)
            )
            # Wait until the server is inside that request (it and this scrape: 2 in flight).
            async with asyncio.timeout(30):
                while True:
                    async with http.get(f"{base}/metrics") as scrape:
                        if "watchledger_http_requests_in_flight 2.0" in await scrape.text():
                            break

            proc.send_signal(signal.SIGTERM)
            assert proc.stdout is not None
            async with asyncio.timeout(30):
                while b'"stopping"' not in (line := await proc.stdout.readline()):
                    assert line, "serve exited without stopping gracefully"
            await hold.rollback()
            async with asyncio.timeout(30):
                response = await in_flight
            assert response.status == 200
            assert (await response.json())["results"][0]["status"] == "recorded"
            response.release()
    finally:
        await blocker.close()

    async with asyncio.timeout(60):
        assert await proc.wait() == 0


async def test_without_a_configured_operator_token_one_is_generated_and_handed_over_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # JSON logs (as _serve_until_ready asks): the token is written to a file, never printed.
    monkeypatch.delenv("WATCHLEDGER_OPERATOR_TOKEN", raising=False)
    env = {"WATCHLEDGER_DATABASE_URL": database_url, "WATCHLEDGER_DATA_DIR": str(tmp_path)}
    printed: list[bytes] = []
    proc, port = await _serve_until_ready(env, before=printed)
    token = (tmp_path / "operator-token").read_text().strip()
    assert token.startswith("wlo.")
    assert token.encode() not in b"".join(printed)
    (tmp_path / "operator-token").unlink()
    assert len(token) >= 4 + 43  # "wlo." and 256 random bits

    async def operator_call(port: int, token: str) -> int:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"http://127.0.0.1:{port}/v1/admin/projections",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            return response.status

    assert await operator_call(port, token) == 200
    assert await operator_call(port, "wlo.guess") == 401
    await _stop(proc, signal.SIGTERM)

    printed.clear()
    proc, port = await _serve_until_ready(env, before=printed)
    assert not [line for line in printed if b"wlo." in line]
    assert not (tmp_path / "operator-token").exists()  # handed over once, ever
    assert await operator_call(port, token) == 200  # and it still works
    events = await _stop(proc, signal.SIGTERM)
    assert token not in json.dumps(events)


async def test_stopping_releases_waiting_long_polls_at_once(database_url: str) -> None:
    token = "long-poll-shutdown-operator-7c3f0a9e5d21b864"
    proc, port = await _serve_until_ready(
        {"WATCHLEDGER_DATABASE_URL": database_url, "WATCHLEDGER_OPERATOR_TOKEN": token}
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        operator = {"Authorization": f"Bearer {token}"}
        account = {"id": "ann", "kind": "full", "name": "Ann"}
        async with http.post(f"{base}/v1/accounts", json=account, headers=operator) as created:
            assert created.status == 201
        server = {"id": "srv-a", "name": "A", "version": "1.40.0", "owner": "ann"}
        async with http.post(f"{base}/v1/servers", json=server, headers=operator) as registered:
            srv = {"Authorization": f"Bearer {(await registered.json())['token']}"}
        poll = asyncio.create_task(
            http.get(f"{base}/v1/servers/srv-a/changes", params={"wait": "60"}, headers=srv)
        )
        async with asyncio.timeout(30):
            while True:
                async with http.get(f"{base}/metrics") as scrape:
                    if "watchledger_http_requests_in_flight 2.0" in await scrape.text():
                        break
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):  # far below the poll's 60 s and the 30 s grace period
            response = await poll
            assert response.status == 200
            assert (await response.json())["changes"] == []
            response.release()
            assert proc.stdout is not None
            await proc.stdout.read()
            assert await proc.wait() == 0
