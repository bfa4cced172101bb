"""Reading an account costs O(1), whatever its stream holds: the account's decided state is a
snapshot row written in the same transaction as its events, and rebuilt from the stream when
it is missing, behind, or of another fold version."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from projections import domain
from services.commands.accounts import AccountService
from services.http.appkeys import ACCOUNTS, POOL, STORE
from services.sql import QUERIES
from tests.api import create_account
from tests.servers import accept, offer, register, revoke, sync


def _service(client: TestClient[Any, Any]) -> AccountService:
    assert client.app is not None
    service: AccountService = client.app[ACCOUNTS]
    return service


async def _folded(client: TestClient[Any, Any], account_id: str) -> domain.Account | None:
    assert client.app is not None
    events = await client.app[STORE].read_stream(f"account-{account_id}", limit=100_000)
    return domain.fold_account(events)


async def test_the_snapshot_is_the_fold_of_the_stream(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    await register(client, ann, "srv-a")
    await register(client, ann, "srv-b")
    await offer(client, ann, "srv-a", "bob")
    await offer(client, ann, "srv-b", "bob")
    await accept(client, bob, "srv-a")
    await sync(client, bob, True)
    await client.patch("/v1/me", json={"visibility": "public"}, headers=bob)
    for account_id in ("ann", "bob"):
        loaded = await _service(client).load(account_id)
        assert loaded is not None
        assert loaded == await _folded(client, account_id)
    bob_now = await _service(client).load("bob")
    assert bob_now is not None
    assert (bob_now.shared_servers, bob_now.offered_servers) == (
        frozenset({"srv-a"}),
        frozenset({"srv-b"}),
    )
    assert (bob_now.sync_enabled, bob_now.visibility) == (True, "public")


async def test_a_snapshot_behind_its_stream_catches_up(client: TestClient[Any, Any]) -> None:
    """Events appended to an account's stream by other means (an import, an older release)
    are folded in at the next load, and the snapshot is stored again."""
    await create_account(client, "ann")
    assert client.app is not None
    store = client.app[STORE]
    await store.append(
        "account-ann", [domain.registry.new(domain.SyncChanged(enabled=True))], expected_version=1
    )
    loaded = await _service(client).load("ann")
    assert loaded is not None
    assert (loaded.sync_enabled, loaded.version) == (True, 2)
    stored = await client.app[POOL].fetchval(
        "SELECT version FROM account_snapshots WHERE account_id = 'ann'"
    )
    assert stored == 2


async def test_a_snapshot_of_another_fold_version_is_rebuilt(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await sync(client, ann, True)
    assert client.app is not None
    pool = client.app[POOL]
    # A snapshot written by a release whose fold read the stream differently (here: wrongly).
    await pool.execute(
        "UPDATE account_snapshots SET fold = fold - 1,"
        " state = jsonb_set(state, '{sync_enabled}', 'false') WHERE account_id = 'ann'"
    )
    loaded = await _service(client).load("ann")
    assert loaded is not None
    assert loaded.sync_enabled
    fold = await pool.fetchval("SELECT fold FROM account_snapshots WHERE account_id = 'ann'")
    assert fold == domain.ACCOUNT_FOLD_VERSION


async def test_a_missing_snapshot_is_rebuilt_and_an_unknown_account_is_none(
    client: TestClient[Any, Any],
) -> None:
    await create_account(client, "ann")
    assert client.app is not None
    await client.app[POOL].execute("DELETE FROM account_snapshots")
    loaded = await _service(client).load("ann")
    assert loaded is not None
    assert loaded.id == "ann"
    assert await _service(client).load("nobody") is None
    assert await _service(client).load("not an id!") is None
    assert set(await _service(client).load_many(["ann", "nobody", "ann"])) == {"ann"}


async def _load_cost(pool: asyncpg.Pool[Any], account_id: str) -> int:
    """Shared buffers the account's load queries (one account, a batch's) touch."""
    cost = 0
    for query, arg in (
        ("account_snapshot_get", account_id),
        ("account_snapshots_get", [account_id]),
    ):
        plan = await pool.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + QUERIES[query], arg)
        root = json.loads(plan)[0]["Plan"]
        cost += int(root["Shared Hit Blocks"]) + int(root["Shared Read Blocks"])
    return cost


async def test_loading_an_account_costs_the_same_however_long_its_stream(
    client: TestClient[Any, Any],
) -> None:
    """Another account can grow a victim's stream at will (offer / withdraw loops): the
    victim's every request must not get slower for it. The load reads one snapshot row and
    probes the stream's key index, whatever the stream holds; and authenticating the victim
    still works past what a fold-everything load would read."""
    ann = await create_account(client, "ann")
    victim = await create_account(client, "victim")
    await create_account(client, "quiet")
    await register(client, ann, "srv-a")
    assert client.app is not None
    store, pool = client.app[STORE], client.app[POOL]
    version = await store.stream_version("account-victim")
    for _ in range(30):  # 3,000 events in the victim's stream, as fast as the log takes them
        batch = [
            domain.registry.new(event)
            for _ in range(50)
            for event in (
                domain.AccessOffered(server_id="srv-a"),
                domain.AccessRevoked(server_id="srv-a"),
            )
        ]
        await store.append("account-victim", batch, expected_version=version)
        version += len(batch)
    await offer(client, ann, "srv-a", "victim")  # through the API: the snapshot is current
    await revoke(client, ann, "srv-a", "victim")
    await _service(client).load("victim")

    await pool.execute("ANALYZE")
    assert await _load_cost(pool, "victim") <= await _load_cost(pool, "quiet") + 4
    response = await client.get("/v1/me", headers=victim)
    assert response.status == 200
    assert (await _service(client).load("victim")) == await _folded(client, "victim")
