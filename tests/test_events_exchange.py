"""`watchledger events export` and `events import`: the raw log as NDJSON, and back through
the event store's append (idempotent, server registry restored)."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from eventstore import database as db
from projections import domain
from services.ops import cli
from tests.api import EPISODE, MOVIE, MOVIE_2, create_account, post_actions, settle, t
from tests.servers import grant, register, send, sync
from tests.test_title_identity import IMDB

EXPORTED = (
    "position, stream, version, event_id, type, schema_version, data, recorded_at, idempotency_keys"
)
# The stored log, as export lines (an event's keys in key order).
STORED = """
    SELECT e.position, e.stream, e.version, e.event_id, e.type, e.schema_version, e.data,
           e.recorded_at,
           ARRAY(SELECT k.key::text FROM event_keys k
                 WHERE k.account_id = e.account_id AND k.position = e.position
                 ORDER BY k.key) AS idempotency_keys
    FROM events e ORDER BY e.position"""


@pytest.fixture(autouse=True)
def _json_logs(cli_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No WATCHLEDGER_* setting but JSON logs (stdout stays the export's alone)."""
    monkeypatch.setenv("WATCHLEDGER_LOG_FORMAT", "json")


async def run(monkeypatch: pytest.MonkeyPatch, url: str, *args: str) -> int:
    """``watchledger ARGS`` in this process (its own event loop, in a thread), on ``url``."""
    monkeypatch.setenv("WATCHLEDGER_DATABASE_URL", url)
    return await asyncio.to_thread(cli.main, list(args))


async def stored(url: str) -> list[dict[str, Any]]:
    """The log of ``url`` as export lines (JSON values), in position order."""
    conn = await db.connect(url)
    try:
        rows = await conn.fetch(STORED)
    finally:
        await conn.close()
    return [
        {
            **dict(row),
            "event_id": str(row["event_id"]),
            "data": json.loads(bytes(row["data"])),
        }
        for row in rows
    ]


def parsed(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        line["recorded_at"] = datetime.fromisoformat(line["recorded_at"])
    return lines


def per_stream(events: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    streams: dict[str, list[tuple[Any, ...]]] = {}
    for e in events:
        streams.setdefault(e["stream"], []).append(
            (e["type"], e["schema_version"], e["data"], e["event_id"], e["idempotency_keys"])
        )
    return streams


async def build_log(client: TestClient[Any, Any]) -> dict[str, dict[str, str]]:
    """Accounts, a server shared (offered and accepted), actions and server events: the
    headers of each party."""
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob", name="Bob")
    srv = await register(client, ann, "srv-a")
    await sync(client, ann, True)
    await sync(client, bob, True)
    await grant(client, ann, "srv-a", "bob", bob)
    await post_actions(
        client,
        ann,
        {"type": "watched", "guid": MOVIE, "at": t(1)},
        {"type": "rated", "guid": MOVIE, "at": t(2), "rating": 8},
        {
            "type": "watched",
            "guid": EPISODE,
            "at": t(3),
            "id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        },
    )
    await post_actions(client, bob, {"type": "watched", "guid": MOVIE_2, "at": t(1)})
    results = await send(
        client,
        "srv-a",
        srv,
        {"account": "bob", "type": "watched", "guid": MOVIE, "at": t(4)},
        {"account": "ann", "type": "unwatched", "guid": MOVIE, "at": t(5)},
    )
    assert all(r["status"] == "recorded" for r in results), results
    await settle(client)
    return {"ann": ann, "bob": bob, "srv": srv}


async def state(client: TestClient[Any, Any], headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get("/v1/me/state", headers=headers)
    assert response.status == 200, await response.text()
    # updated_at is when the target recorded the event: an import records it anew.
    return [
        {k: v for k, v in item.items() if k != "updated_at"}
        for item in (await response.json())["items"]
    ]


async def test_export_writes_the_log_as_ndjson_in_position_order(
    make_client: Callable[..., Any],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await build_log(await make_client(database_url))
    log = await stored(database_url)
    assert {e["type"] for e in log} >= {"account_created", "server_registered", "access_accepted"}
    assert any(e["idempotency_keys"] for e in log)
    assert any(not e["idempotency_keys"] for e in log)
    capsys.readouterr()

    assert await run(monkeypatch, database_url, "events", "export") == 0
    out = capsys.readouterr().out
    assert out.endswith("\n")
    assert [list(line) for line in map(json.loads, out.splitlines())] == [
        EXPORTED.split(", ")
    ] * len(log)
    assert parsed(out) == log

    after = log[3]["position"]
    assert await run(monkeypatch, database_url, "events", "export", "--after", str(after)) == 0
    assert parsed(capsys.readouterr().out) == log[4:]


async def test_import_into_an_empty_database_restores_the_log_and_its_tokens(
    make_client: Callable[..., Any],
    make_database: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    source_url = await make_database()
    source = await make_client(source_url)
    headers = await build_log(source)
    assert await run(monkeypatch, source_url, "events", "export") == 0
    export = tmp_path / "events.ndjson"
    export.write_text(capsys.readouterr().out)
    log = await stored(source_url)

    target_url = await make_database()
    assert await run(monkeypatch, target_url, "events", "import", str(export)) == 0
    err = capsys.readouterr().err
    assert f"imported {len(log)} events (0 already present) from {len(log)} lines" in err
    imported = await stored(target_url)
    assert per_stream(imported) == per_stream(log)

    # Again: every event is a duplicate, nothing changes.
    assert await run(monkeypatch, target_url, "events", "import", str(export)) == 0
    err = capsys.readouterr().err
    assert f"imported 0 events ({len(log)} already present) from {len(log)} lines" in err
    assert await stored(target_url) == imported

    # The service on the new database takes the same tokens and folds the same state.
    target = await make_client(target_url)
    await settle(target)
    for who in ("ann", "bob"):
        assert (await target.get("/v1/me", headers=headers[who])).status == 200
    answer = await target.get("/v1/servers/srv-a", headers=headers["srv"])
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["accounts"] == ["ann", "bob"]
    for who in ("ann", "bob"):
        assert await state(target, headers[who]) == await state(source, headers[who])
    # And what the new database's projections hold is what its log gives.
    assert await run(monkeypatch, target_url, "verify") == 0


async def test_an_earlier_releases_export_gets_this_releases_keys(
    make_client: Callable[..., Any],
    make_database: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """An earlier release exported one key an event (``idempotency_key``), and none per id of
    a title: the import keeps that key and gives a watch action its natural keys (rule 5)."""
    source_url = await make_database()
    source = await make_client(source_url)
    ann = await create_account(source, "ann")
    await post_actions(source, ann, {"type": "watched", "guid": MOVIE, "ids": [IMDB], "at": t(1)})
    assert await run(monkeypatch, source_url, "events", "export") == 0
    old_key = str(uuid.uuid4())
    lines = []
    for line in map(json.loads, capsys.readouterr().out.splitlines()):
        del line["idempotency_keys"]
        lines.append({**line, "idempotency_key": old_key if line["type"] == "watched" else None})
    export = tmp_path / "events.ndjson"
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))

    target_url = await make_database()
    assert await run(monkeypatch, target_url, "events", "import", str(export)) == 0
    [watched] = [e for e in await stored(target_url) if e["type"] == "watched"]
    at = datetime.fromisoformat(t(1))
    natural = domain.natural_keys("ann", (MOVIE, IMDB), "watched", at, None)
    assert watched["idempotency_keys"] == sorted([old_key, *map(str, natural)])

    target = await make_client(target_url)
    echo = await post_actions(target, ann, {"type": "watched", "guid": IMDB, "at": t(1)})
    assert echo == [{"status": "duplicate"}]


async def test_import_reads_standard_input(
    make_client: Callable[..., Any],
    make_database: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source_url = await make_database()
    await build_log(await make_client(source_url))
    assert await run(monkeypatch, source_url, "events", "export") == 0
    out = capsys.readouterr().out

    target_url = await make_database()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(out.encode())))
    monkeypatch.setenv("WATCHLEDGER_LOG_FORMAT", "console")
    assert await run(monkeypatch, target_url, "events", "import", "-") == 0
    count = len(out.splitlines())
    summary = f"imported {count} events (0 already present) from {count} lines in "
    assert summary in capsys.readouterr().err.splitlines()[-1]
    assert per_stream(await stored(target_url)) == per_stream(await stored(source_url))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("not json", "line 3: JSON is malformed"),
        ('{"position": 1}', "line 3: Object missing required field"),
        ("UNKNOWN", "line 3: unknown event type 'mystery'"),
        ("BAD_DATA", "line 3: account_created data"),
    ],
)
async def test_a_bad_line_stops_the_import_naming_it(
    make_client: Callable[..., Any],
    make_database: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    bad: str,
    reason: str,
) -> None:
    source_url = await make_database()
    await build_log(await make_client(source_url))
    assert await run(monkeypatch, source_url, "events", "export") == 0
    lines = capsys.readouterr().out.splitlines()
    template = json.loads(lines[0])
    assert template["type"] == "account_created"
    if bad == "UNKNOWN":
        bad = json.dumps(
            {**template, "type": "mystery", "event_id": "00000000-0000-4000-8000-000000000001"}
        )
    elif bad == "BAD_DATA":
        bad = json.dumps({**template, "data": {"kind": 3}})
    export = tmp_path / "events.ndjson"
    export.write_text("\n".join([*lines[:2], bad, *lines[2:]]) + "\n")

    target_url = await make_database()
    assert await run(monkeypatch, target_url, "events", "import", str(export)) == 1
    err = capsys.readouterr().err
    assert reason in err, err
    # What came before the bad line stays imported.
    assert {e["event_id"] for e in await stored(target_url)} == {
        json.loads(line)["event_id"] for line in lines[:2]
    }


async def test_import_needs_a_migrated_database(
    make_database: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    export = tmp_path / "events.ndjson"
    export.write_text("")
    url = await make_database(migrated=False)
    assert await run(monkeypatch, url, "events", "import", str(export)) == 1
    assert "migrations pending" in capsys.readouterr().err
    migrated = await make_database()
    assert await run(monkeypatch, migrated, "events", "import", str(tmp_path / "missing")) == 1
    assert "cannot read" in capsys.readouterr().err


async def test_a_server_registered_to_another_account_is_refused(
    make_client: Callable[..., Any],
    make_database: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    source_url = await make_database()
    await build_log(await make_client(source_url))
    assert await run(monkeypatch, source_url, "events", "export") == 0
    export = tmp_path / "events.ndjson"
    export.write_text(capsys.readouterr().out)

    target_url = await make_database()
    target = await make_client(target_url)
    await register(target, await create_account(target, "cat"), "srv-a")
    assert await run(monkeypatch, target_url, "events", "import", str(export)) == 1
    assert "server 'srv-a' is registered to another account here" in capsys.readouterr().err
    conn: asyncpg.Connection[Any] = await db.connect(target_url)
    try:
        assert await conn.fetchval("SELECT owner FROM servers WHERE server_id = 'srv-a'") == "cat"
    finally:
        await conn.close()


@pytest.mark.parametrize("action", ["export", "import"])
def test_events_help_names_the_environment_variables(
    capsys: pytest.CaptureFixture[str], action: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["events", action, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "WATCHLEDGER_DATABASE_URL" in out
    assert "WATCHLEDGER_LOG_FORMAT" in out


def test_after_must_be_a_position(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["events", "export", "--after", "-1"])
    assert exited.value.code == 2
    assert "expected a log position" in capsys.readouterr().err
