"""A convergence simulation: three media servers, five accounts with overlapping access.

Users act on the servers and through the API at random. Servers go offline and come back,
resend batches whose answer they lost, lose pull answers (and so get changes again), answer
baseline requests, and report back every change they apply (echoes). Each server names titles
its own way (product rule 1b): one by Plex GUID and external ids, one by external ids only, one
by an episode's show and numbers — and that one keeps whole seconds only (as Emby does), so its
echoes come back with their times cut. Apps name a title by every id it has. In the end every
server's copy equals each account's state in the service, each title is one title in the
service, and every account's history holds exactly one record per distinct action: no echo
loops, nothing lost, nothing doubled.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from aiohttp.test_utils import TestClient

from tests.api import create_account, post_actions, settle
from tests.servers import grant, offer, pull, register, send, sync

ACCOUNTS = ["u0", "u1", "u2", "u3", "u4"]
OWNERS = {"s0": "u0", "s1": "u1", "s2": "u2"}
SHARED = {"s0": ["u1", "u3"], "s1": ["u3", "u4"], "s2": ["u0", "u4"]}
# Offered but never accepted: the server must never see or touch these accounts.
PENDING = {"s0": ["u2"], "s1": ["u0"]}


class Title(NamedTuple):
    """A title of the catalogue, by every id there is for it, and by each server's ids."""

    ids: tuple[str, ...]  # in shown order
    by_server: dict[str, tuple[str, ...]]


def _movie(i: int) -> Title:
    plex, imdb, tmdb = f"plex://movie/{i:024x}", f"imdb://movie/tt{1000 + i}", f"tmdb://movie/{i}"
    return Title((plex, imdb, tmdb), {"s0": (plex, imdb, tmdb), "s1": (imdb, tmdb), "s2": (tmdb,)})


def _episode(i: int) -> Title:
    plex, tvdb = f"plex://episode/{i + 100:024x}", f"tvdb://episode/{5000 + i}"
    numbers = f"tvdb://show/81189/s1e{i + 1}"
    return Title(
        (plex, tvdb, numbers),
        {"s0": (plex, tvdb, numbers), "s1": (tvdb, numbers), "s2": (numbers,)},
    )


TITLES = [_movie(i) for i in range(6)] + [_episode(i) for i in range(6)]
TITLE_OF = {i: n for n, title in enumerate(TITLES) for i in title.ids}  # id -> title number
WHOLE_SECONDS = {"s2"}  # servers that keep no finer time

Key = tuple[str, int]  # (account, title number)


class Clock:
    """Strictly increasing action times a whole second or more apart, so every action is
    distinct by (title, type, second); with a fraction of a second, as most servers keep."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._now = datetime(2026, 6, 1, tzinfo=UTC)

    def tick(self, *, whole: bool = False) -> str:
        fraction = 0 if whole else self._rng.randrange(1, 1000) * 1000
        self._now = self._now.replace(microsecond=0) + timedelta(seconds=1, microseconds=fraction)
        return self._now.isoformat().replace("+00:00", "Z")


def _cut(at: str | None) -> str | None:
    """A time as a server that keeps whole seconds has it."""
    return None if at is None else at[:19] + "Z"


def _named(ids: tuple[str, ...]) -> dict[str, Any]:
    return {"guid": ids[0], **({"ids": list(ids[1:])} if len(ids) > 1 else {})}


class SimServer:
    def __init__(self, sid: str, headers: dict[str, str], accounts: list[str]) -> None:
        self.sid = sid
        self.whole_seconds = sid in WHOLE_SECONDS
        self.headers = headers
        self.accounts = accounts
        self.copy: dict[Key, dict[str, Any]] = {}
        self.outbox: list[dict[str, Any]] = []
        self.cursor: str | None = None
        self.online = True
        # What happened, so the test can check the simulation exercised it.
        self.counts = {"echoes": 0, "resent": 0, "lost_pulls": 0, "offline": 0}

    def user_action(
        self, rng: random.Random, clock: Clock, actions: list[tuple[str, int, str, str]]
    ) -> None:
        account, title = rng.choice(self.accounts), rng.randrange(len(TITLES))
        kind = rng.choice(["watched", "watched", "unwatched", "rated", "unrated"])
        at = clock.tick(whole=self.whole_seconds)
        entry = self.copy.setdefault((account, title), _empty())
        event: dict[str, Any] = {"account": account, "type": kind, **self.names(title), "at": at}
        if kind in ("watched", "unwatched"):
            entry.update(watched=kind == "watched", watched_at=at)
        elif kind == "rated":
            event["rating"] = rng.randint(1, 10)
            entry.update(rating=event["rating"], rated_at=at)
        else:
            entry.update(rating=None, rated_at=at)
        self.outbox.append(event)
        actions.append((account, title, kind, at))

    def names(self, title: int) -> dict[str, Any]:
        """How this server names a title."""
        return _named(TITLES[title].by_server[self.sid])

    async def push(self, client: TestClient[Any, Any], rng: random.Random) -> None:
        if not self.online or not self.outbox:
            return
        batch = self.outbox[:]
        results = await send(client, self.sid, self.headers, *batch)
        assert all(r["status"] in ("recorded", "duplicate") for r in results), results
        if rng.random() < 0.3:  # the answer was lost: the same batch again
            self.counts["resent"] += 1
            again = await send(client, self.sid, self.headers, *batch)
            assert all(r["status"] == "duplicate" for r in again), again
        del self.outbox[: len(batch)]

    async def pull(
        self, client: TestClient[Any, Any], rng: random.Random, *, lossy: bool = True
    ) -> int:
        if not self.online:
            return 0
        changes, cursor = await pull(client, self.sid, self.headers, self.cursor, limit="7")
        if lossy and rng.random() < 0.2:
            self.counts["lost_pulls"] += bool(changes)
            return len(changes)  # the answer was lost: nothing applied, nothing acknowledged
        for change in changes:
            if change["kind"] == "baseline_request":
                self.outbox += self._baseline(change["account"])
                continue
            # Found in the library by any of its ids this server knows.
            [title] = {TITLE_OF[i] for i in change["ids"] if i in self.known}
            key = (change["account"], title)
            applied = {k: change[k] for k in ("watched", "watched_at", "rating", "rated_at")}
            if self.whole_seconds:
                applied.update(watched_at=_cut(applied["watched_at"]))
                applied.update(rated_at=_cut(applied["rated_at"]))
            self.copy[key] = applied
            echo = _echo(change["account"], self.names(title), applied)
            self.counts["echoes"] += len(echo)
            self.outbox += echo
        self.cursor = cursor
        return len(changes)

    @property
    def known(self) -> set[str]:
        return {i for title in TITLES for i in title.by_server[self.sid]}

    def _baseline(self, account: str) -> list[dict[str, Any]]:
        records = []
        for (acc, title), entry in self.copy.items():
            if acc != account:
                continue
            if entry["watched"]:
                records.append(
                    {
                        "account": acc,
                        "type": "watched",
                        **self.names(title),
                        "at": entry["watched_at"],
                        "baseline": True,
                    }
                )
            if entry["rating"] is not None:
                records.append(
                    {
                        "account": acc,
                        "type": "rated",
                        **self.names(title),
                        "at": entry["rated_at"],
                        "rating": entry["rating"],
                        "baseline": True,
                    }
                )
        return records


def _empty() -> dict[str, Any]:
    return {"watched": None, "watched_at": None, "rating": None, "rated_at": None}


def _echo(account: str, names: dict[str, Any], applied: dict[str, Any]) -> list[dict[str, Any]]:
    """What a server reports back after applying a change: the values it now holds, under its
    own ids for the title."""
    echo = []
    if applied["watched"] is not None:
        kind = "watched" if applied["watched"] else "unwatched"
        echo.append({"account": account, "type": kind, **names, "at": applied["watched_at"]})
    if applied["rating"] is not None:
        echo.append(
            {
                "account": account,
                "type": "rated",
                **names,
                "at": applied["rated_at"],
                "rating": applied["rating"],
            }
        )
    elif applied["rated_at"] is not None:
        echo.append({"account": account, "type": "unrated", **names, "at": applied["rated_at"]})
    return echo


async def service_state(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> dict[int, dict[str, Any]]:
    """The account's state by title number: each title of the catalogue is one title in the
    service, whichever ids named it (they were all linked)."""
    page = await (
        await client.get("/v1/me/state", params={"limit": "1000"}, headers=headers)
    ).json()
    assert page["next_cursor"] is None
    state: dict[int, dict[str, Any]] = {}
    for item in page["items"]:
        [title] = {TITLE_OF[i] for i in item["ids"]}
        assert title not in state, ("one title, two states", item, state[title])
        assert item["guid"] == item["ids"][0]
        state[title] = item
    return state


def _when(at: str) -> datetime:
    return datetime.fromisoformat(at)


async def history(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> list[tuple[int, str, datetime]]:
    page = await (
        await client.get("/v1/me/history", params={"limit": "1000"}, headers=headers)
    ).json()
    assert page["next_cursor"] is None
    return sorted((TITLE_OF[h["guid"]], h["type"], _when(h["at"])) for h in page["items"])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_servers_and_the_service_converge(client: TestClient[Any, Any], seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock(random.Random(-seed))  # its own: the simulation's choices stay the same
    tokens = {a: await create_account(client, a) for a in ACCOUNTS}
    for account in ACCOUNTS:
        await sync(client, tokens[account], True)
    servers = []
    for sid, owner in OWNERS.items():
        headers = await register(client, tokens[owner], sid)
        for account in SHARED[sid]:
            await grant(client, tokens[owner], sid, account, tokens[account])
        for account in PENDING.get(sid, []):
            await offer(client, tokens[owner], sid, account)
        servers.append(SimServer(sid, headers, [owner, *SHARED[sid]]))
    actions: list[tuple[str, int, str, str]] = []  # (account, title, type, at)

    for _ in range(80):
        roll = rng.random()
        server = rng.choice(servers)
        if roll < 0.35:
            server.user_action(rng, clock, actions)
        elif roll < 0.5:
            account, title = rng.choice(ACCOUNTS), rng.randrange(len(TITLES))
            kind = rng.choice(["watched", "unwatched", "rated", "unrated"])
            action: dict[str, Any] = {"type": kind, **_named(TITLES[title].ids), "at": clock.tick()}
            if kind == "rated":
                action["rating"] = rng.randint(1, 10)
            if rng.random() < 0.5:
                action["id"] = str(uuid.uuid4())
            await post_actions(client, tokens[account], action)
            actions.append((account, title, kind, action["at"]))
        elif roll < 0.6:
            server.online = not server.online
            server.counts["offline"] += not server.online
        elif roll < 0.8:
            await server.push(client, rng)
        else:
            await settle(client)
            await server.pull(client, rng)

    # Everyone back online; exchange until nothing moves.
    for server in servers:
        server.online = True
    for _ in range(40):
        for server in servers:
            await server.push(client, rng)
        await settle(client)
        moved = 0
        for server in servers:
            moved += await server.pull(client, rng, lossy=False)
        if moved == 0 and not any(s.outbox for s in servers):
            break
    else:
        pytest.fail("servers and service did not settle: an echo loop?")

    # A server offered to an account that never accepted may not write to it either.
    for server in servers:
        for account in PENDING.get(server.sid, []):
            event = {"account": account, "type": "watched", **server.names(0), "at": clock.tick()}
            [result] = await send(client, server.sid, server.headers, event)
            assert result == {"status": "rejected", "code": "no_access"}

    totals = {k: sum(s.counts[k] for s in servers) for k in servers[0].counts}
    assert all(totals.values()), totals  # every kind of trouble happened at least once

    for account in ACCOUNTS:
        state = await service_state(client, tokens[account])
        for server in servers:
            if account not in server.accounts:
                assert not any(acc == account for acc, _ in server.copy)
                continue
            copy = {
                title: entry
                for (acc, title), entry in server.copy.items()
                if acc == account and (entry["watched"] is not None or entry["rating"] is not None)
            }
            assert set(copy) == set(state), (server.sid, account)
            cut = _cut if server.whole_seconds else lambda at: at
            for title, entry in copy.items():
                expected, where = state[title], (server.sid, account, title)
                assert entry["watched_at"] == cut(expected["watched_at"]), where
                assert bool(entry["watched"]) == expected["watched"], where
                assert entry["rating"] == expected["rating"], where
                assert entry["rated_at"] == cut(expected["rated_at"]), where
        # Exactly one history record per distinct watched/unwatched action: echoes, retries and
        # baselines of titles with history added nothing.
        made = sorted(
            (title, k, _when(at))
            for a, title, k, at in actions
            if a == account and k in ("watched", "unwatched")
        )
        assert await history(client, tokens[account]) == made
