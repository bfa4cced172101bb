"""`watchledger replay` and `watchledger verify` as operators run them: exit codes, summaries,
progress, and the guard rails of point-in-time copies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from services.ops import cli
from services.ops.replaying import progress_shown
from tests.api import MOVIE, create_account, post_actions, settle, t
from tests.test_events_exchange import run


@pytest.fixture(autouse=True)
def _json_logs(cli_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHLEDGER_LOG_FORMAT", "json")


def _records(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


async def test_replay_verify_and_a_point_in_time_copy(
    make_client: Callable[..., Any],
    database_url: str,
    pool: asyncpg.Pool[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = await make_client(database_url)
    ann = await create_account(client, "ann")
    [first] = await post_actions(
        client, ann, {"type": "rated", "guid": MOVIE, "at": t(1), "rating": 3}
    )
    await post_actions(client, ann, {"type": "rated", "guid": MOVIE, "at": t(2), "rating": 8})
    await settle(client)

    assert await run(monkeypatch, database_url, "replay") == 0
    records = _records(capsys.readouterr().err)
    [summary] = [r["summary"] for r in records if r["event"] == "command_result"]
    assert summary.startswith("replayed watch_state, watch_history, friends, activity: ")
    assert "and swapped in" in summary
    assert any(r["event"] == "replay_progress" for r in records)  # not a terminal: lines

    assert await run(monkeypatch, database_url, "verify") == 0
    [summary] = [r["summary"] for r in _records(capsys.readouterr().err) if "summary" in r]
    assert summary.startswith("verified 8 tables: no differences")

    position = str(first["position"])
    args = ("replay", "--until-position", position, "--into", "before_ann_changed")
    assert await run(monkeypatch, database_url, *args) == 0
    assert "into schema before_ann_changed" in capsys.readouterr().err
    rating = await pool.fetchval("SELECT rating FROM before_ann_changed.watch_state")
    assert rating == 3

    await pool.execute("UPDATE watch_state SET rating = 1")
    assert await run(monkeypatch, database_url, "verify", "--projection", "watch_state") == 1
    lines = [r["summary"] for r in _records(capsys.readouterr().err) if "summary" in r]
    assert lines == [
        "differences in 1 of 4 tables:",
        "  watch_state.watch_state: 1 rows only in the live table, 1 only in the rebuild;"
        " accounts: ann",
    ]
    assert await run(monkeypatch, database_url, "replay", "--projection", "watch_state") == 0
    assert await run(monkeypatch, database_url, "verify") == 0


async def test_a_copy_never_replaces_a_schema_it_did_not_make(
    database_url: str,
    pool: asyncpg.Pool[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await pool.execute("CREATE SCHEMA keep_me; CREATE TABLE keep_me.notes (n int)")

    code = await run(
        monkeypatch,
        database_url,
        "replay",
        "--until-time",
        "2026-01-01T00:00:00Z",
        "--into",
        "keep_me",
    )

    assert code == 1
    assert "not a point-in-time copy" in capsys.readouterr().err
    assert await pool.fetchval("SELECT count(*) FROM keep_me.notes") == 0


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--until-time", "yesterday"], "expected a time with a UTC offset"),
        (["--until-time", "2026-01-01T00:00:00"], "expected a time with a UTC offset"),
        (["--until-position", "-3"], "expected a log position"),
        (["--projection", "feeds"], "invalid choice"),
        (["--workers", "0"], "expected 1 to 16 connections"),
        (["--workers", "two"], "expected 1 to 16 connections"),
        (["--until-position", "3", "--until-time", "2026-01-01T00:00:00Z"], "not allowed with"),
    ],
)
def test_replay_options_are_checked(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["replay", *args])
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_a_terminal_gets_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_shown("replay", terminal=True) as progress:
        progress(500, 1000)
        progress(1000, 1000)
    err = capsys.readouterr().err
    assert "replay: 100%" in err
    assert "1.00k/1.00k" in err


def test_help_says_what_replay_and_verify_do(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("replay", "verify"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert "swap them in atomically" in out
    assert "exits 1 on any" in out
