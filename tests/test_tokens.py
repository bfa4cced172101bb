"""Token lifecycle (api.md; issue "Run it for real", item 6): an account replaces its own
token, the operator gives an account a new one, an owner gives a server a new one — the old
token stops working at once, the new one works at once, everything else stays; a token
replaced before an export is the one that works after the import. The operator's own token
must be long and random, and every secret may come from a file (``_FILE``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from eventstore import EventStore
from eventstore import database as db
from eventstore.exchange import export_events, import_events
from services.ops import cli
from services.ops.exchange import ImportRules
from services.runtime.config import SettingError, Settings
from tests.api import MOVIE, OPERATOR, bearer, create_account, post_actions, t
from tests.servers import pull, register, send, setup_owner_with_server, sync

WEAK = "CHANGE-ME"  # what the Kubernetes example ships as a placeholder


async def _token(client: TestClient[Any, Any], path: str, headers: dict[str, str]) -> str:
    response = await client.post(path, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) == {"token"}
    token: str = body["token"]
    return token


async def _status(client: TestClient[Any, Any], headers: dict[str, str]) -> int:
    return (await client.get("/v1/me", headers=headers)).status


async def test_an_account_replaces_its_token_and_the_old_one_stops_at_once(
    client: TestClient[Any, Any],
) -> None:
    old = await create_account(client, "ann")
    await post_actions(client, old, {"type": "watched", "guid": MOVIE, "at": t(1)})

    new = bearer(await _token(client, "/v1/me/token", old))

    assert new != old
    assert await _status(client, old) == 401
    assert await _status(client, new) == 200
    # Nothing else of the account changed: its state is there under the new token.
    state = await client.get("/v1/me/state", headers=new)
    assert [item["guid"] for item in (await state.json())["items"]] == [MOVIE]
    # The old one cannot replace it again; the new one can.
    assert (await client.post("/v1/me/token", headers=old)).status == 401
    newer = bearer(await _token(client, "/v1/me/token", new))
    assert (await _status(client, new), await _status(client, newer)) == (401, 200)


async def test_the_operator_gives_an_account_a_new_token(client: TestClient[Any, Any]) -> None:
    old = await create_account(client, "ann")
    bob = await create_account(client, "bob")

    new = bearer(await _token(client, "/v1/accounts/ann/token", OPERATOR))

    assert (await _status(client, old), await _status(client, new)) == (401, 200)
    assert await _status(client, bob) == 200  # another account's token is untouched
    # Only the operator may; an unknown account is 404.
    for headers, status in ((new, 403), (bob, 403), ({}, 401)):
        assert (await client.post("/v1/accounts/ann/token", headers=headers)).status == status
    missing = await client.post("/v1/accounts/nobody/token", headers=OPERATOR)
    assert missing.status == 404
    assert (await missing.json())["code"] == "not_found"


async def test_an_owner_gives_its_server_a_new_token(client: TestClient[Any, Any]) -> None:
    owner, old = await setup_owner_with_server(client)
    other, other_server = await setup_owner_with_server(client, "zed", "srv-z")
    await send(client, "srv-a", old, {"account": "owner", "type": "watched", "guid": MOVIE})
    pending, _ = await pull(client, "srv-a", old)

    new = bearer(await _token(client, "/v1/servers/srv-a/token", owner))

    stale = await client.get("/v1/servers/srv-a/changes", headers=old)
    assert stale.status == 401
    assert pending
    assert (await pull(client, "srv-a", new))[0] == pending  # its queue is still there
    await pull(client, "srv-z", other_server)  # another server's token is untouched
    # Only the owner may: not another account, not the server itself, not the operator.
    for headers, status in ((other, 403), (new, 403), (OPERATOR, 403), ({}, 401)):
        answer = await client.post("/v1/servers/srv-a/token", headers=headers)
        assert answer.status == status, await answer.text()
    missing = await client.post("/v1/servers/srv-nope/token", headers=owner)
    assert missing.status == 404


async def test_tokens_replaced_before_an_export_are_the_ones_that_work_after_the_import(
    make_client: Callable[..., Any], make_database: Callable[..., Any], tmp_path: Path
) -> None:
    """The events export and import (`watchledger events`, tested through the command in
    test_events_exchange.py) carry a replaced token: the server registry's row follows it."""
    source_url = await make_database()
    source = await make_client(source_url)
    ann = await create_account(source, "ann")
    old_server = await register(source, ann, "srv-a")
    await sync(source, ann, True)
    server = bearer(await _token(source, "/v1/servers/srv-a/token", ann))
    new_ann = bearer(await _token(source, "/v1/me/token", ann))
    export = tmp_path / "events.ndjson"
    conn = await db.connect(source_url)
    try:
        with export.open("wb") as out:
            await export_events(conn, out)
    finally:
        await conn.close()

    target_url = await make_database()
    pool = await db.create_pool(target_url, min_size=1, max_size=4)
    try:
        with export.open("rb") as lines:
            await import_events(EventStore(pool), lines, rules=ImportRules())
    finally:
        await pool.close()
    target = await make_client(target_url)

    assert (await _status(target, ann), await _status(target, new_ann)) == (401, 200)
    assert (await target.get("/v1/servers/srv-a", headers=old_server)).status == 401
    assert (await target.get("/v1/servers/srv-a", headers=server)).status == 200


# -- the operator's token, and secrets from files ----------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        WEAK,
        "short-but-random-9f3a",  # 21 characters
        "change-me-change-me-change-me-change-me",  # long, but a placeholder
        "a" * 64,  # long, but not random
    ],
)
def test_a_short_or_well_known_operator_token_is_refused_without_being_shown(token: str) -> None:
    with pytest.raises(SettingError) as raised:
        Settings.load({"WATCHLEDGER_OPERATOR_TOKEN": token})
    assert raised.value.source == "WATCHLEDGER_OPERATOR_TOKEN"
    assert "long random secret" in raised.value.message
    assert token not in str(raised.value)
    with pytest.raises(SettingError):
        Settings(operator_token=token)


def test_serve_refuses_to_start_with_the_placeholder_token(
    cli_isolated: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line naming the variable, exit 2, before anything starts (no database either)."""
    monkeypatch.setenv("WATCHLEDGER_OPERATOR_TOKEN", WEAK)

    assert cli.main(["serve"]) == 2

    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1
    assert "WATCHLEDGER_OPERATOR_TOKEN" in err
    assert WEAK not in out + err


def test_every_setting_may_come_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "operator-token"
    token_file.write_text("k3v9Qx2LmP8rT5wZ1bN7cF4hJ6dS0aYe\n")  # a line break, as editors end
    url_file = tmp_path / "database-url"
    url_file.write_text("postgresql://watchledger:s3cret@db/watchledger")
    settings = Settings.load(
        {
            "WATCHLEDGER_OPERATOR_TOKEN_FILE": str(token_file),
            "WATCHLEDGER_DATABASE_URL_FILE": str(url_file),
            "WATCHLEDGER_PORT_FILE": "",  # empty: as if unset
        }
    )
    assert settings.operator_token == "k3v9Qx2LmP8rT5wZ1bN7cF4hJ6dS0aYe"
    assert settings.database_url == "postgresql://watchledger:s3cret@db/watchledger"
    assert settings.port == 8080


def test_a_secret_file_that_cannot_be_read_or_doubles_the_variable_is_an_error(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nothing-here"
    with pytest.raises(SettingError) as raised:
        Settings.load({"WATCHLEDGER_OPERATOR_TOKEN_FILE": str(missing)})
    assert raised.value.source == "WATCHLEDGER_OPERATOR_TOKEN_FILE"
    assert "readable file" in raised.value.message
    present = tmp_path / "token"
    present.write_text("k3v9Qx2LmP8rT5wZ1bN7cF4hJ6dS0aYe")
    with pytest.raises(SettingError, match="only one of") as raised:
        Settings.load(
            {
                "WATCHLEDGER_OPERATOR_TOKEN_FILE": str(present),
                "WATCHLEDGER_OPERATOR_TOKEN": "k3v9Qx2LmP8rT5wZ1bN7cF4hJ6dS0aYe",
            }
        )
    assert "k3v9Qx2LmP8rT5wZ1bN7cF4hJ6dS0aYe" not in str(raised.value)
    weak = tmp_path / "weak"
    weak.write_text(WEAK)
    with pytest.raises(SettingError, match="long random secret"):
        Settings.load({"WATCHLEDGER_OPERATOR_TOKEN_FILE": str(weak)})


def test_the_kubernetes_example_ships_a_placeholder_watchledger_refuses() -> None:
    """An operator who applies the example without replacing the token gets a refusal, not
    a service anyone can administer with the documented placeholder."""
    import yaml

    example = Path(__file__).parents[1] / "deploy" / "k8s" / "watchledger.yaml"
    [secret] = [d for d in yaml.safe_load_all(example.read_text()) if d["kind"] == "Secret"]
    token = secret["stringData"]["operator-token"]
    with pytest.raises(SettingError):
        Settings(operator_token=token)
