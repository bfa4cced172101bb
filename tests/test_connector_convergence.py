"""Three media servers kept in step by their connectors: a fake Plex, a fake Jellyfin and a fake
Emby, each with its connector, and two accounts that each have a user on all three.

Each server names the titles its own way (rule 1b): Plex by its GUIDs and external ids,
Jellyfin by IMDb/TMDB/TVDB ids, Emby by TMDB ids and, for episodes, only by the show's TVDB id
and the episode's numbers (and it keeps whole seconds). People act on all three servers — play
to the end, mark played and unplayed by hand, rate with halves, clear ratings — and through the
API, at random. Rounds are separated by a clock that moves on, and in a round each account's
title is touched once, so what "the latest action" is never depends on how the tasks
interleave. Meanwhile webhooks are lost, a server goes down and comes back, and connectors
restart (their SQLite state kept).

After every round, once everything has settled, each server's user data equals the account's
state in watchledger, and the writes each server received are exactly the minimum (one per
field that had to change there): no write of a state the server had, and no echo loop (a last
full exchange moves nothing). In the end each account's history holds exactly one record per
distinct action.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.connectors.fakes.mediabrowser import FakeMediaBrowser
from services.connectors.fakes.plex import FakePlex
from services.connectors.model import api_rating
from tests.api import create_account, post_actions, settle
from tests.connectors import WEBHOOK_SECRET, Running, running_connector, write_config
from tests.servers import grant, register, sync

ACCOUNTS = ("ann", "bob")
MOVIES, EPISODES = 4, 3
SHOW_TVDB = "81189"
PLEX_SHOW = "plex://show/5d9c086c46115600200aa2fe"
ROUNDS = 14


@dataclass(frozen=True)
class Title:
    """A title of the catalogue and every id watchledger may show for it."""

    n: int
    episode: int | None  # the episode number (season 1), or None for a movie
    imdb: str = ""
    tmdb: str = ""
    tvdb: str = ""
    plex: str = ""

    @property
    def ids(self) -> frozenset[str]:
        if self.episode is None:
            return frozenset((self.plex, f"imdb://movie/{self.imdb}", f"tmdb://movie/{self.tmdb}"))
        numbers = f"s1e{self.episode}"
        return frozenset(
            (
                self.plex,
                f"tvdb://episode/{self.tvdb}",
                f"tvdb://show/{SHOW_TVDB}/{numbers}",
                f"{PLEX_SHOW}/{numbers}",
            )
        )


TITLES = [
    Title(i, None, imdb=f"tt{1_000_000 + i}", tmdb=str(500 + i), plex=f"plex://movie/{i:024x}")
    for i in range(MOVIES)
] + [
    Title(MOVIES + j, j + 1, tvdb=str(349_232 + j), plex=f"plex://episode/{j + 100:024x}")
    for j in range(EPISODES)
]
TITLE_OF = {i: t.n for t in TITLES for i in t.ids}

Key = tuple[str, int]  # (account, title number)
Value = tuple[bool, int | None]  # (played, rating on the API's scale)


class Clock:
    """Simulated time: whole seconds, a little later at each tick; every fake and every
    connector reads it, so each action's time is known to the test."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = float(int(time.time()) - 30 * 86_400)
        self.fakes: list[FakePlex | FakeMediaBrowser] = []

    def tick(self) -> float:
        self.now += self.rng.randint(1, 3)
        for fake in self.fakes:
            fake.clock = self.now
        return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Node:
    """One media server, its connector, and how each account's user and each title are named
    there."""

    kind: str
    sid: str
    fake: FakePlex | FakeMediaBrowser
    users: dict[str, str]  # account -> the user's key in the fake's data
    items: list[str]  # title number -> the item's id there
    config: Path
    env: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)  # as the server, to watchledger
    running: Running | None = None
    stack: contextlib.AsyncExitStack | None = None

    def value(self, account: str, title: int) -> Value:
        watch = self.fake.data.get((self.users[account], self.items[title]))
        if watch is None:
            return (False, None)
        return (watch.plays > 0, api_rating(watch.rating))

    def last_played(self, account: str, title: int) -> float | None:
        watch = self.fake.data.get((self.users[account], self.items[title]))
        return None if watch is None else watch.last_played


class World:
    def __init__(self, client: TestClient[Any, Any], clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self.nodes: list[Node] = []
        self.tokens: dict[str, dict[str, str]] = {}

    async def start(self, node: Node) -> None:
        stack = contextlib.AsyncExitStack()
        node.running = await stack.enter_async_context(
            running_connector(self.client, node.config, node.env, clock=self.clock.datetime)
        )
        node.fake.webhook_url = node.running.webhook_url
        node.stack = stack

    async def stop(self, node: Node) -> None:
        assert node.stack is not None
        node.fake.webhook_url = None
        await node.stack.aclose()
        node.running = node.stack = None

    def movement(self) -> tuple[int, int]:
        """Writes the servers received, events the connectors sent (this run of each)."""
        writes = sum(len(n.fake.writes) for n in self.nodes)
        sent = sum(len(n.running.sent) for n in self.nodes if n.running)
        return writes, sent

    async def drain(self, node: Node) -> None:
        assert node.running is not None
        await node.running.drain(node.sid, node.headers)

    async def quiesce(self) -> None:
        """Poll every server and exchange until a whole pass moves nothing."""
        for _ in range(8):
            before = self.movement()
            for node in self.nodes:
                assert node.running is not None
                if isinstance(node.fake, FakeMediaBrowser):
                    await node.fake.echoed()
                await node.running.poll()
            await settle(self.client)
            for node in self.nodes:
                await self.drain(node)
            for node in self.nodes:
                assert node.running is not None
                if isinstance(node.fake, FakeMediaBrowser):
                    await node.fake.echoed()
                await node.running.delivered()
            if self.movement() == before:
                return
        pytest.fail("the servers never went quiet: an echo loop?")

    async def service(self, account: str) -> dict[int, dict[str, Any]]:
        """The account's state in watchledger by title number (every id it shows is one the
        catalogue has for that title: titles linked, nothing stray)."""
        response = await self.client.get(
            "/v1/me/state", params={"limit": "1000"}, headers=self.tokens[account]
        )
        page = await response.json()
        assert page["next_cursor"] is None
        found: dict[int, dict[str, Any]] = {}
        for item in page["items"]:
            assert set(item["ids"]) <= set(TITLE_OF), item["ids"]
            [title] = {TITLE_OF[i] for i in item["ids"]}
            assert title not in found, ("one title, two states", item)
            found[title] = item
        return found

    def snapshot(self) -> dict[tuple[str, str, int], Value]:
        return {
            (node.kind, account, t.n): node.value(account, t.n)
            for node in self.nodes
            for account in ACCOUNTS
            for t in TITLES
        }


@dataclass
class Action:
    """What a person did: the account, the title, watched/unwatched/rated/unrated, the time
    it happened, the end of its round, and where (a server's kind, or "api")."""

    account: str
    title: int
    type: str
    at: float
    where: str
    round_end: float = 0.0
    effective: bool = True  # a watched/unwatched that changed something on its server


def _plex(world: World, tmp_path: Path, url: str, fake: FakePlex) -> Node:
    items = []
    fake.add_show("500", PLEX_SHOW, [f"tvdb://{SHOW_TVDB}"])
    for t in TITLES:
        key = str(600 + t.n)
        if t.episode is None:
            fake.add_movie(key, t.plex, [f"imdb://{t.imdb}", f"tmdb://{t.tmdb}"])
        else:
            fake.add_episode(key, "500", 1, t.episode, t.plex, [f"tvdb://{t.tvdb}"])
        items.append(key)
    fake.add_account("2", "bob", "plex-bob-token")
    config = write_config(
        tmp_path / "plex.toml",
        kind="plex",
        watchledger=str(world.client.make_url("")).rstrip("/"),
        server_id="plex-1",
        media_url=url,
        users=[("owner", "ann", None), ("bob", "bob", "PLEX_TOKEN_BOB")],
    )
    env = {"MEDIA_TOKEN": "plex-owner-token", "PLEX_TOKEN_BOB": "plex-bob-token"}
    return Node("plex", "plex-1", fake, {"ann": "1", "bob": "2"}, items, config, env)


def _mediabrowser(world: World, tmp_path: Path, url: str, fake: FakeMediaBrowser) -> Node:
    jellyfin = fake.flavor == "jellyfin"
    users = {account: fake.add_user(account) for account in ACCOUNTS}
    series = fake.add_series({"Tvdb": SHOW_TVDB})
    items = []
    for t in TITLES:
        if t.episode is None:
            providers = {"Imdb": t.imdb, "Tmdb": t.tmdb} if jellyfin else {"Tmdb": t.tmdb}
            items.append(fake.add_movie(providers))
        else:
            providers = {"Tvdb": t.tvdb} if jellyfin else {}
            items.append(fake.add_episode(series, 1, t.episode, providers))
    sid = "jf-1" if jellyfin else "emby-1"
    config = write_config(
        tmp_path / f"{sid}.toml",
        kind=fake.flavor,
        watchledger=str(world.client.make_url("")).rstrip("/"),
        server_id=sid,
        media_url=url,
        users=[(account, account, None) for account in ACCOUNTS],
    )
    return Node(fake.flavor, sid, fake, users, items, config, {"MEDIA_TOKEN": "mb-key"})


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakePlex, FakeMediaBrowser, FakeMediaBrowser]]:
    made = (FakePlex("plex-owner-token"), FakeMediaBrowser("jellyfin", "mb-key"))
    emby = FakeMediaBrowser("emby", "mb-key")
    yield (*made, emby)
    for fake in (*made, emby):
        await fake.close()


async def setup_world(
    client: TestClient[Any, Any],
    tmp_path: Path,
    clock: Clock,
    fakes: tuple[FakePlex, FakeMediaBrowser, FakeMediaBrowser],
) -> World:
    """Ann owns the Plex and the Emby server, Bob the Jellyfin one; each shares with the
    other, who accepts; both turn sync on; the three connectors start."""
    world = World(client, clock)
    plex, jellyfin, emby = fakes
    clock.fakes = [plex, jellyfin, emby]
    clock.tick()
    world.nodes = [
        _plex(world, tmp_path, await plex.start(plex.app()), plex),
        _mediabrowser(world, tmp_path, await jellyfin.start(jellyfin.app()), jellyfin),
        _mediabrowser(world, tmp_path, await emby.start(emby.app()), emby),
    ]
    world.tokens = {a: await create_account(client, a) for a in ACCOUNTS}
    owners = {"plex-1": "ann", "jf-1": "bob", "emby-1": "ann"}
    for node in world.nodes:
        owner = owners[node.sid]
        other = next(a for a in ACCOUNTS if a != owner)
        node.headers = await register(client, world.tokens[owner], node.sid)
        await grant(client, world.tokens[owner], node.sid, other, world.tokens[other])
        node.env |= {
            "WATCHLEDGER_SERVER_TOKEN": node.headers["Authorization"].removeprefix("Bearer "),
            "CONNECTOR_WEBHOOK_SECRET": WEBHOOK_SECRET,
        }
    for account in ACCOUNTS:
        await sync(client, world.tokens[account], True)
    for node in world.nodes:
        await world.start(node)
    return world


async def act_on_server(
    node: Node, account: str, title: int, kind: str, rating: float | None, at: float
) -> Action:
    """A person does ``kind`` on the server at the clock's time."""
    user, item = node.users[account], node.items[title]
    played_before = node.value(account, title)[0]
    fake = node.fake
    if kind == "play":
        await fake.play_to_end(user, item)
    elif kind == "mark":
        if isinstance(fake, FakePlex):
            fake.mark_played(user, item)
        else:
            await fake.mark_played(user, item)
    elif kind == "unmark":
        if isinstance(fake, FakePlex):
            fake.mark_unplayed(user, item)
        else:
            await fake.mark_unplayed(user, item)
        return Action(account, title, "unwatched", at, node.kind, effective=played_before)
    else:
        await fake.rate(user, item, rating)
        return Action(account, title, "rated" if rating else "unrated", at, node.kind)
    return Action(account, title, "watched", at, node.kind)


async def act_through_the_api(
    world: World, rng: random.Random, account: str, title: int, at: float
) -> Action:
    kind = rng.choice(["watched", "watched", "unwatched", "rated", "unrated"])
    # Apps name a title by every id they have (a server finds it by the ids it knows).
    named = rng.sample(sorted(TITLES[title].ids), len(TITLES[title].ids))
    at += rng.randrange(0, 1000) / 1000  # apps keep fractions of a second
    action: dict[str, Any] = {"type": kind, "guid": named[0], "at": iso(at)}
    if len(named) > 1:
        action["ids"] = named[1:]
    if kind == "rated":
        action["rating"] = rng.randint(1, 10)
    [result] = await post_actions(world.client, world.tokens[account], action)
    assert result["status"] == "recorded", result
    return Action(account, title, kind, at, "api")


def expected_history(actions: list[Action], account: str) -> dict[tuple[int, str], list[Action]]:
    found: dict[tuple[int, str], list[Action]] = {}
    for a in actions:
        if a.account == account and a.type in ("watched", "unwatched") and a.effective:
            found.setdefault((a.title, a.type), []).append(a)
    return found


def _seconds(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()


async def check_history(world: World, actions: list[Action]) -> None:
    """One record per distinct action: a watched at the second it happened; an unwatched at
    its time or, where no webhook told of it, when the poll noticed it (within its round)."""
    for account in ACCOUNTS:
        response = await world.client.get(
            "/v1/me/history", params={"limit": "1000"}, headers=world.tokens[account]
        )
        page = await response.json()
        assert page["next_cursor"] is None
        recorded: dict[tuple[int, str], list[float]] = {}
        for h in page["items"]:
            recorded.setdefault((TITLE_OF[h["guid"]], h["type"]), []).append(_seconds(h["at"]))
        expected = expected_history(actions, account)
        assert set(recorded) == set(expected), account
        for key, made in expected.items():
            times = sorted(recorded[key])
            assert len(times) == len(made), (account, key, times, made)
            for when, action in zip(times, sorted(made, key=lambda a: a.at), strict=True):
                if action.type == "watched" or action.where == "api":
                    assert int(when) == int(action.at), (account, key, when, action)
                else:
                    assert action.at <= when <= action.round_end, (account, key, when, action)


async def check_servers(world: World) -> None:
    """Every server's user data equals each account's state in watchledger; a server that
    takes a date has one no later than the state's."""
    for account in ACCOUNTS:
        state = await world.service(account)
        for node in world.nodes:
            for t in TITLES:
                item = state.get(t.n, {})
                expected = (bool(item.get("watched")), item.get("rating"))
                where = (node.kind, account, t.n)
                assert node.value(account, t.n) == expected, (where, item)
                played = node.last_played(account, t.n)
                if node.kind != "plex" and expected[0] and played is not None:
                    assert int(played) <= _seconds(item["watched_at"]), (where, item)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_three_servers_and_the_api_converge_without_echoes(
    client: TestClient[Any, Any],
    tmp_path: Path,
    fakes: tuple[FakePlex, FakeMediaBrowser, FakeMediaBrowser],
    seed: int,
) -> None:
    rng = random.Random(seed)
    clock = Clock(random.Random(-seed))
    world = await setup_world(client, tmp_path, clock, fakes)
    actions: list[Action] = []
    trouble = {"lost_webhooks": 0, "down": 0, "restarts": 0}
    writes = {node.kind: 0 for node in world.nodes}
    minimum = {node.kind: 0 for node in world.nodes}
    try:
        for _ in range(ROUNDS):
            before = world.snapshot()
            written = {node.kind: len(node.fake.writes) for node in world.nodes}
            losing = [n for n in world.nodes if rng.random() < 0.3]
            for node in losing:
                node.fake.webhook_url = None
                trouble["lost_webhooks"] += 1
            down = rng.choice(world.nodes) if rng.random() < 0.25 else None
            if down is not None:
                down.fake.down = True
                trouble["down"] += 1
            keys = rng.sample([(a, t.n) for a in ACCOUNTS for t in TITLES], rng.randint(2, 5))
            made: list[Action] = []
            for account, title in keys:
                at = clock.tick()
                choices = [n for n in world.nodes if n is not down]
                where: Node | None = rng.choice([*choices, None])
                if where is None:
                    made.append(await act_through_the_api(world, rng, account, title, at))
                    continue
                kind = rng.choice(["play", "mark", "unmark", "unmark", "rate", "rate"])
                rating = rng.choice([None, 3, 7.5, 9, 10]) if kind == "rate" else None
                made.append(await act_on_server(where, account, title, kind, rating, at))
            if down is not None:
                down.fake.down = False
            if rng.random() < 0.3:
                node = rng.choice(world.nodes)
                await world.stop(node)
                await world.start(node)
                trouble["restarts"] += 1
            for node in losing:
                if node.running is not None:
                    node.fake.webhook_url = node.running.webhook_url
            await world.quiesce()
            for action in made:
                action.round_end = clock.now
            actions += made

            # Each server received exactly the writes it needed: one per field of an
            # account's title that changed there, not by its own user.
            after = world.snapshot()
            own = {(a.where, a.account, a.title) for a in made}
            for node in world.nodes:
                needed = sum(
                    (before[k][0] != after[k][0]) + (before[k][1] != after[k][1])
                    for k in before
                    if k[0] == node.kind and k not in own
                )
                got = len(node.fake.writes) - written[node.kind]
                assert got == needed, (node.kind, got, needed, node.fake.writes[-got:])
                writes[node.kind] += got
                minimum[node.kind] += needed
            await check_servers(world)
        await check_history(world, actions)
        assert all(trouble.values()), trouble
        print(f"seed {seed}: {len(actions)} actions, trouble {trouble}, writes {writes}")
    finally:
        for node in world.nodes:
            if node.stack is not None:
                await world.stop(node)
