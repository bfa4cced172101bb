"""Friends, visibility and activity feeds (product rule 9, with rules 10 and 11 for what leaves
them), through the running service: friend requests and their answers, who sees whose activity
(paged and streamed), keyset pages that stay stable under writes, deletions, and replays that
give back the live friendships and feeds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
from aiohttp.test_utils import TestClient

from eventstore import EventStore, LogCursor
from eventstore import database as db
from projections import activity as activity_reads
from projections.catalog import all_projections
from projections.domain import (
    AccountCreated,
    FriendRemoved,
    FriendRequested,
    Rated,
    VisibilityChanged,
    Watched,
    account_stream,
    registry,
    watch_stream,
)
from projections.protocol import Projection
from projections.replay import replay, verify
from services.commands.friends import StreamReads
from services.http.appkeys import FRIENDS, POOL, STREAM_SLOTS
from services.http.auth import Principal
from services.http.cursors import encode_cursor
from tests.api import (
    EPISODE,
    EPISODE_2,
    MOVIE,
    MOVIE_2,
    T0,
    create_account,
    post_actions,
    settle,
    t,
)
from tests.servers import send, setup_owner_with_server, sync
from tests.test_api_conventions import problem
from tests.test_outage import PostgresProxy

Headers = dict[str, str]
ACTIVITY_KEYS = {"id", "actor", "type", "guid", "rating", "at"}
# The projection tables of friendships and feeds, each with a key that orders it completely.
FEED_TABLES = {
    "friend_requests": "account_id, friend_id",
    "activity": "account_id, position",
    "activity_profiles": "account_id",
}


def movie(n: int) -> str:
    """A title of its own for each n."""
    return f"plex://movie/{n:024x}"


# -- helpers ------------------------------------------------------------------------------------


async def friends_of(client: TestClient[Any, Any], headers: Headers) -> dict[str, Any]:
    response = await client.get("/v1/me/friends", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def ask(client: TestClient[Any, Any], headers: Headers, other: str) -> None:
    """PUT /v1/me/friends/{other}: ask, or accept the other's request."""
    response = await client.put(f"/v1/me/friends/{other}", headers=headers)
    assert response.status == 204, await response.text()


async def end(client: TestClient[Any, Any], headers: Headers, other: str) -> None:
    """DELETE /v1/me/friends/{other}: end, withdraw or decline."""
    response = await client.delete(f"/v1/me/friends/{other}", headers=headers)
    assert response.status == 204, await response.text()


async def befriend(
    client: TestClient[Any, Any], a: tuple[str, Headers], b: tuple[str, Headers]
) -> None:
    for (_, asker), (other, _) in ((a, b), (b, a)):
        await ask(client, asker, other)


async def feed(client: TestClient[Any, Any], headers: Headers, **query: Any) -> Any:
    response = await client.get("/v1/me/feed", headers=headers, params=query)
    assert response.status == 200, await response.text()
    return await response.json()


async def activity(
    client: TestClient[Any, Any], headers: Headers, account: str, **query: Any
) -> tuple[int, Any]:
    """GET /v1/accounts/{account}/activity: (status, body)."""
    response = await client.get(f"/v1/accounts/{account}/activity", headers=headers, params=query)
    return response.status, await response.json()


async def set_visibility(client: TestClient[Any, Any], headers: Headers, visibility: str) -> None:
    response = await client.patch("/v1/me", json={"visibility": visibility}, headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["visibility"] == visibility


async def record(
    client: TestClient[Any, Any], headers: Headers, type_: str, guid: str, at: str, **more: Any
) -> str:
    """Record one action; the id of the event it made."""
    action = {"type": type_, "guid": guid, "at": at, "id": str(uuid.uuid4()), **more}
    [result] = await post_actions(client, headers, action)
    assert result["status"] == "recorded", result
    return str(action["id"])


def shown(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a reader sees of each item."""
    for item in items:
        assert set(item) == ACTIVITY_KEYS, item
    return [(i["actor"], i["type"], i["guid"], i["rating"], i["at"]) for i in items]


async def count_events(client: TestClient[Any, Any], type_: str) -> int:
    assert client.app is not None
    count: int = await client.app[POOL].fetchval(
        "SELECT count(*) FROM events WHERE type = $1", type_
    )
    return count


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Wait (briefly polling) until ``condition`` holds; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        # No event to wait on: what ends a stream is the server's own task, on its own time.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def people(client: TestClient[Any, Any], *names: str) -> dict[str, Headers]:
    return {name: await create_account(client, name) for name in names}


# -- friend requests ----------------------------------------------------------------------------


async def test_a_request_accepted_makes_friends_and_asking_again_records_nothing(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob")
    await ask(client, p["ann"], "bob")
    await ask(client, p["ann"], "bob")  # idempotent
    assert await count_events(client, "friend_requested") == 1
    assert await friends_of(client, p["ann"]) == {
        "friends": [],
        "incoming": [],
        "outgoing": ["bob"],
    }
    assert await friends_of(client, p["bob"]) == {
        "friends": [],
        "incoming": ["ann"],
        "outgoing": [],
    }

    await ask(client, p["bob"], "ann")  # accepts
    for me, other in (("ann", "bob"), ("bob", "ann")):
        assert await friends_of(client, p[me]) == {
            "friends": [other],
            "incoming": [],
            "outgoing": [],
        }
    await ask(client, p["bob"], "ann")
    await ask(client, p["ann"], "bob")
    assert await count_events(client, "friend_requested") == 2
    assert (await friends_of(client, p["ann"]))["friends"] == ["bob"]


async def test_the_asked_declines_and_the_asker_withdraws(client: TestClient[Any, Any]) -> None:
    p = await people(client, "ann", "bob")
    empty: dict[str, list[str]] = {"friends": [], "incoming": [], "outgoing": []}

    await ask(client, p["ann"], "bob")
    await end(client, p["bob"], "ann")  # bob declines
    assert await friends_of(client, p["ann"]) == empty
    assert await friends_of(client, p["bob"]) == empty
    await end(client, p["bob"], "ann")  # idempotent
    assert await count_events(client, "friend_removed") == 1

    # A declined request can be made again; and the asker withdraws it.
    await ask(client, p["ann"], "bob")
    assert (await friends_of(client, p["bob"]))["incoming"] == ["ann"]
    await end(client, p["ann"], "bob")
    assert await friends_of(client, p["ann"]) == empty
    assert await friends_of(client, p["bob"]) == empty
    await end(client, p["ann"], "bob")
    assert await count_events(client, "friend_removed") == 2

    # Withdrawn, bob's own later request is only a request: ann has not asked any more.
    await ask(client, p["bob"], "ann")
    assert await friends_of(client, p["ann"]) == {
        "friends": [],
        "incoming": ["bob"],
        "outgoing": [],
    }


@pytest.mark.parametrize("ender", ["asker", "accepter"])
async def test_either_side_ends_a_friendship(client: TestClient[Any, Any], ender: str) -> None:
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))  # ann asked, bob accepted
    who, other = ("ann", "bob") if ender == "asker" else ("bob", "ann")

    await end(client, p[who], other)

    empty: dict[str, list[str]] = {"friends": [], "incoming": [], "outgoing": []}
    assert await friends_of(client, p["ann"]) == empty
    assert await friends_of(client, p["bob"]) == empty
    await end(client, p[other], who)  # the other side too: nothing left to end
    assert await count_events(client, "friend_removed") == 1
    # Friends again takes both asking again.
    await ask(client, p[other], who)
    assert (await friends_of(client, p[other]))["outgoing"] == [who]
    await ask(client, p[who], other)
    assert (await friends_of(client, p["ann"]))["friends"] == ["bob"]


async def test_ending_what_was_never_asked_is_204_and_records_nothing(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob", "cy")
    await ask(client, p["bob"], "cy")
    await end(client, p["ann"], "bob")
    await end(client, p["ann"], "nobody")  # no such account: no change either
    await end(client, p["ann"], "cy")
    assert await count_events(client, "friend_removed") == 0
    assert await friends_of(client, p["cy"]) == {"friends": [], "incoming": ["bob"], "outgoing": []}


async def test_an_unknown_account_is_404_and_oneself_422(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    body = await problem(await client.put("/v1/me/friends/nobody", headers=ann), 404, "not_found")
    assert "nobody" in body["detail"]
    for method in (client.put, client.delete):
        body = await problem(
            await method("/v1/me/friends/ann", headers=ann), 422, "invalid_request"
        )
        assert body["errors"]
    assert await count_events(client, "friend_requested") == 0
    assert await count_events(client, "friend_removed") == 0
    assert await friends_of(client, ann) == {"friends": [], "incoming": [], "outgoing": []}


async def test_the_lists_are_sorted_and_hold_only_the_callers_pairs(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "zoe", "bea", "max", "kim", "cal", "dan", "abe", "yul")
    for friend in ("zoe", "bea", "max"):
        await befriend(client, ("ann", p["ann"]), (friend, p[friend]))
    for asker in ("kim", "cal"):
        await ask(client, p[asker], "ann")
    for asked in ("yul", "dan", "abe"):
        await ask(client, p["ann"], asked)
    await befriend(client, ("zoe", p["zoe"]), ("kim", p["kim"]))  # not ann's business

    assert await friends_of(client, p["ann"]) == {
        "friends": ["bea", "max", "zoe"],
        "incoming": ["cal", "kim"],
        "outgoing": ["abe", "dan", "yul"],
    }
    assert await friends_of(client, p["zoe"]) == {
        "friends": ["ann", "kim"],
        "incoming": [],
        "outgoing": [],
    }
    assert await friends_of(client, p["kim"]) == {
        "friends": ["zoe"],
        "incoming": [],
        "outgoing": ["ann"],
    }


async def test_asking_each_other_at_once_makes_friends(client: TestClient[Any, Any]) -> None:
    for n in range(5):
        a, b = f"a{n}", f"b{n}"
        p = await people(client, a, b)
        await asyncio.gather(ask(client, p[a], b), ask(client, p[b], a))
        assert (await friends_of(client, p[a]))["friends"] == [b]
        assert (await friends_of(client, p[b]))["friends"] == [a]


# -- who sees what ------------------------------------------------------------------------------


async def test_the_feed_shows_only_mutual_friends_who_let_friends_see(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob", "pat", "eve", "cy", "dee", "pub")
    for friend in ("bob", "pat", "eve"):
        await befriend(client, ("ann", p["ann"]), (friend, p[friend]))
    await ask(client, p["ann"], "cy")  # asked, not accepted
    await ask(client, p["dee"], "ann")  # asked by, not accepted
    await set_visibility(client, p["pat"], "public")
    await set_visibility(client, p["eve"], "private")
    await set_visibility(client, p["pub"], "public")
    await set_visibility(client, p["cy"], "public")
    await set_visibility(client, p["dee"], "public")
    for n, name in enumerate(("ann", "bob", "pat", "eve", "cy", "dee", "pub")):
        await record(client, p[name], "watched", movie(n), t(n))

    page = await feed(client, p["ann"])
    assert shown(page["items"]) == [
        ("pat", "watched", movie(2), None, t(2)),
        ("bob", "watched", movie(1), None, t(1)),
    ]
    assert page["next_cursor"] is None
    # The other way round: ann (visibility "friends") is in her friends' feeds, not in the
    # feeds of those with one-sided requests.
    assert [i["actor"] for i in (await feed(client, p["bob"]))["items"]] == ["ann"]
    assert [i["actor"] for i in (await feed(client, p["eve"]))["items"]] == ["ann"]
    for name in ("cy", "dee", "pub"):
        assert (await feed(client, p[name]))["items"] == []


RELATIONS = ["self", "friend", "asked", "asked_by", "stranger"]
# Who may read the owner's activity, by its visibility.
MAY_SEE = {
    "private": {"self"},
    "friends": {"self", "friend"},
    "public": set(RELATIONS),
}


async def test_who_may_read_an_accounts_activity(client: TestClient[Any, Any]) -> None:
    p = await people(client, "own", "friend", "asked", "asked_by", "stranger")
    await befriend(client, ("own", p["own"]), ("friend", p["friend"]))
    await ask(client, p["own"], "asked")
    await ask(client, p["asked_by"], "own")
    await record(client, p["own"], "watched", MOVIE, t(1))
    await record(client, p["own"], "rated", MOVIE, t(2), rating=6)
    expected = [("own", "rated", MOVIE, 6, t(2)), ("own", "watched", MOVIE, None, t(1))]
    viewers = {"self": p["own"], **{r: p[r] for r in RELATIONS if r != "self"}}

    status, unknown = await activity(client, p["stranger"], "nobody")
    assert status == 404
    for visibility in ("private", "friends", "public"):
        await set_visibility(client, p["own"], visibility)
        for relation, headers in viewers.items():
            response = await client.get("/v1/accounts/own/activity", headers=headers)
            if relation in MAY_SEE[visibility]:
                assert response.status == 200, (visibility, relation)
                body = await response.json()
                assert shown(body["items"]) == expected
                assert body["next_cursor"] is None
            else:
                # Hidden looks exactly like no such account: nothing tells them apart.
                hidden = await problem(response, 404, "not_found")
                assert hidden == {**unknown, "detail": unknown["detail"].replace("nobody", "own")}
    # Nobody's feed but the friend's holds the activity (public or not).
    for relation, headers in viewers.items():
        assert bool((await feed(client, headers))["items"]) == (relation == "friend")


async def test_visibility_applies_to_past_activity_at_once(client: TestClient[Any, Any]) -> None:
    p = await people(client, "ann", "bob", "sam")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await record(client, p["bob"], "watched", MOVIE, t(1))
    await record(client, p["bob"], "rated", MOVIE_2, t(2), rating=9)
    both = [("bob", "rated", MOVIE_2, 9, t(2)), ("bob", "watched", MOVIE, None, t(1))]
    assert shown((await feed(client, p["ann"]))["items"]) == both

    await set_visibility(client, p["bob"], "private")
    assert (await feed(client, p["ann"]))["items"] == []
    assert (await activity(client, p["ann"], "bob"))[0] == 404
    status, own = await activity(client, p["bob"], "bob")
    assert (status, shown(own["items"])) == (200, both)

    await set_visibility(client, p["bob"], "friends")
    assert shown((await feed(client, p["ann"]))["items"]) == both
    status, seen = await activity(client, p["ann"], "bob")
    assert (status, shown(seen["items"])) == (200, both)
    assert (await activity(client, p["sam"], "bob"))[0] == 404

    await set_visibility(client, p["bob"], "public")
    assert shown((await feed(client, p["ann"]))["items"]) == both
    status, seen = await activity(client, p["sam"], "bob")
    assert (status, shown(seen["items"])) == (200, both)
    assert (await feed(client, p["sam"]))["items"] == []  # a stranger's feed: still not

    await set_visibility(client, p["bob"], "private")
    assert (await activity(client, p["sam"], "bob"))[0] == 404
    assert (await feed(client, p["ann"]))["items"] == []


# -- what is activity, and its order ------------------------------------------------------------


async def test_only_watched_and_rated_appear_ordered_by_at(client: TestClient[Any, Any]) -> None:
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    ids = [
        await record(client, p["bob"], "watched", MOVIE, t(1)),
        await record(client, p["bob"], "rated", MOVIE, t(2), rating=8),
    ]
    await record(client, p["bob"], "unwatched", MOVIE, t(3))  # later: removes nothing
    await record(client, p["bob"], "unrated", MOVIE, t(4))
    ids.append(await record(client, p["bob"], "watched", EPISODE, t(0)))  # late and old
    ids.append(await record(client, p["bob"], "rated", EPISODE, t(1.5), rating=3))  # in between
    ids.append(await record(client, p["bob"], "watched", MOVIE, t(5)))  # watched again

    expected = [
        ("bob", "watched", MOVIE, None, t(5)),
        ("bob", "rated", MOVIE, 8, t(2)),
        ("bob", "rated", EPISODE, 3, t(1.5)),
        ("bob", "watched", MOVIE, None, t(1)),
        ("bob", "watched", EPISODE, None, t(0)),
    ]
    page = await feed(client, p["ann"])
    assert shown(page["items"]) == expected
    assert [i["id"] for i in page["items"]] == [ids[4], ids[1], ids[3], ids[0], ids[2]]
    for reader in ("ann", "bob"):
        status, body = await activity(client, p[reader], "bob")
        assert (status, shown(body["items"])) == (200, expected)
    # The state went back and forth; the activity did not.
    state = await (await client.get(f"/v1/me/state/{MOVIE}", headers=p["bob"])).json()
    assert (state["watched"], state["rating"]) == (True, None)


async def test_baseline_records_from_a_server_are_never_activity(
    client: TestClient[Any, Any],
) -> None:
    bob, srv = await setup_owner_with_server(client, "bob", "srv-b")  # sync on
    ann = await create_account(client, "ann")
    await befriend(client, ("ann", ann), ("bob", bob))
    results = await send(
        client,
        "srv-b",
        srv,
        {"account": "bob", "type": "watched", "guid": MOVIE, "at": t(1), "baseline": True},
        {
            "account": "bob",
            "type": "rated",
            "guid": MOVIE_2,
            "at": t(2),
            "rating": 6,
            "baseline": True,
        },
        {"account": "bob", "type": "watched", "guid": EPISODE, "at": t(3)},
        {"account": "bob", "type": "rated", "guid": EPISODE, "at": t(0), "rating": 2},
    )
    assert [r["status"] for r in results] == ["recorded"] * 4
    await settle(client)

    expected = [("bob", "watched", EPISODE, None, t(3)), ("bob", "rated", EPISODE, 2, t(0))]
    assert shown((await feed(client, ann))["items"]) == expected
    status, own = await activity(client, bob, "bob")
    assert (status, shown(own["items"])) == (200, expected)
    # The baselines were recorded all the same: they are state.
    state = await (await client.get(f"/v1/me/state/{MOVIE_2}", headers=bob)).json()
    assert state["rating"] == 6


# -- pages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("read", ["feed", "activity"])
async def test_pages_see_every_item_once_while_activity_is_recorded(
    client: TestClient[Any, Any], read: str
) -> None:
    p = await people(client, "ann", "bob", "cy")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await befriend(client, ("ann", p["ann"]), ("cy", p["cy"]))
    actors = ("bob", "cy") if read == "feed" else ("bob",)
    start: set[str] = set()
    n = 0
    for hour in (1, 1, 1, 2, 3, 3, 4, 5, 5, 5, 6):  # ties on `at`, across actors too
        for actor in actors:
            n += 1
            start.add(await record(client, p[actor], "watched", movie(n), t(hour)))

    async def page(cursor: str | None) -> Any:
        query: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        if read == "feed":
            return await feed(client, p["ann"], **query)
        status, body = await activity(client, p["ann"], "bob", **query)
        assert status == 200, body
        return body

    seen: list[str] = []
    keys: list[tuple[str, str]] = []
    older: set[str] = set()
    cursor: str | None = None
    while True:
        body = await page(cursor)
        assert len(body["items"]) <= 3
        seen += [i["id"] for i in body["items"]]
        keys += [(i["at"], i["id"]) for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["items"]) == 3
        # Between two pages: activity newer than any page so far, and older than all of it.
        for actor in actors:
            n += 1
            await record(client, p[actor], "rated", movie(n), t(100 + n), rating=5)
            n += 1
            older.add(await record(client, p[actor], "watched", movie(n), t(-n)))

    assert len(seen) == len(set(seen))  # no repeats
    assert set(seen) == start | older  # every item there at the start (and older ones) once
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)


@pytest.mark.parametrize("limit", [1, 3, 7])
async def test_a_feed_of_many_friends_merges_them_exactly(
    client: TestClient[Any, Any], limit: int
) -> None:
    """However the friends' activity is spread (one very active, most quiet, some silent or
    hidden), the pages together are every visible item once, in (`at`, recorded) order."""
    names = [f"f{n}" for n in range(12)]
    p = await people(client, "ann", *names)
    for name in names:
        await befriend(client, ("ann", p["ann"]), (name, p[name]))
    await set_visibility(client, p["f11"], "private")
    recorded: list[tuple[str, int, str]] = []  # (at, order recorded, id)
    plan = [("f0", h) for h in range(20, 40)]  # the newest are all one friend's
    plan += [(f"f{1 + n % 9}", n) for n in range(15)]  # f10 is silent
    plan += [("f11", 50), ("f0", 10), ("f3", 10), ("f5", 45), ("f0", 45)]  # ties on `at`
    for order, (name, hour) in enumerate(plan):
        event_id = await record(client, p[name], "watched", movie(order), t(hour))
        if name != "f11":
            recorded.append((t(hour), order, event_id))
    expected = [event_id for _, _, event_id in sorted(recorded, reverse=True)]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        body = await feed(client, p["ann"], limit=limit, **({"cursor": cursor} if cursor else {}))
        seen += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["items"]) == limit
    assert seen == expected


async def test_a_bad_cursor_or_limit_is_422(client: TestClient[Any, Any]) -> None:
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    for n in range(3):
        await record(client, p["bob"], "watched", movie(n), t(n))
    good = (await feed(client, p["ann"], limit=1))["next_cursor"]
    assert good is not None
    bad_cursors = [
        "not a cursor!",
        "e30",  # {}
        encode_cursor([1, 2]),  # a stream's cursor
        encode_cursor(["2026-01-01T00:00:00Z"]),
        encode_cursor(["2026-01-01T00:00:00Z", -1]),
        encode_cursor(["0001-01-01T00:00:00+01:00", 1]),
        good[:-2],
    ]
    for path in ("/v1/me/feed", "/v1/accounts/bob/activity"):
        for cursor in bad_cursors:
            response = await client.get(path, params={"cursor": cursor}, headers=p["ann"])
            await problem(response, 422, "invalid_request")
        for limit in ("0", "1001", "x"):
            response = await client.get(path, params={"limit": limit}, headers=p["ann"])
            await problem(response, 422, "invalid_request")
        # A cursor of one read pages the other too: it is a key of (at, position).
        response = await client.get(path, params={"cursor": good}, headers=p["ann"])
        assert response.status == 200
        assert [i["at"] for i in (await response.json())["items"]] == [t(1), t(0)]


# -- deletions ----------------------------------------------------------------------------------


async def test_deleting_history_takes_watched_items_out_of_every_feed(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await record(client, p["bob"], "watched", MOVIE, t(1))
    await record(client, p["bob"], "rated", MOVIE, t(2), rating=7)
    await record(client, p["bob"], "watched", EPISODE, t(3))
    await record(client, p["bob"], "rated", EPISODE, t(4), rating=9)
    await record(client, p["ann"], "watched", MOVIE_2, t(5))
    assert len((await feed(client, p["ann"]))["items"]) == 4

    response = await client.delete("/v1/me/history", params={"confirm": "true"}, headers=p["bob"])
    assert response.status == 200, await response.text()

    rated = [("bob", "rated", EPISODE, 9, t(4)), ("bob", "rated", MOVIE, 7, t(2))]
    assert shown((await feed(client, p["ann"]))["items"]) == rated
    for reader in ("ann", "bob"):
        status, body = await activity(client, p[reader], "bob")
        assert (status, shown(body["items"])) == (200, rated)
    # The friend's own activity is the friend's: untouched.
    assert [i["guid"] for i in (await feed(client, p["bob"]))["items"]] == [MOVIE_2]
    # New history keeps coming.
    await record(client, p["bob"], "watched", EPISODE_2, t(6))
    assert shown((await feed(client, p["ann"]))["items"]) == [
        ("bob", "watched", EPISODE_2, None, t(6)),
        *rated,
    ]


async def test_deleting_state_takes_rated_items_out_of_every_feed(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await record(client, p["bob"], "watched", MOVIE, t(1))
    await record(client, p["bob"], "rated", MOVIE, t(2), rating=7)
    await record(client, p["bob"], "rated", EPISODE, t(3), rating=9)
    await record(client, p["bob"], "watched", EPISODE, t(4))
    await sync(client, p["bob"], True)
    response = await client.delete("/v1/me/state", params={"confirm": "true"}, headers=p["bob"])
    await problem(response, 409, "sync_enabled")
    assert len((await feed(client, p["ann"]))["items"]) == 4
    await sync(client, p["bob"], False)

    response = await client.delete("/v1/me/state", params={"confirm": "true"}, headers=p["bob"])
    assert response.status == 200, await response.text()

    watched = [("bob", "watched", EPISODE, None, t(4)), ("bob", "watched", MOVIE, None, t(1))]
    assert shown((await feed(client, p["ann"]))["items"]) == watched
    for reader in ("ann", "bob"):
        status, body = await activity(client, p[reader], "bob")
        assert (status, shown(body["items"])) == (200, watched)
    await record(client, p["bob"], "rated", MOVIE, t(5), rating=2)
    assert shown((await feed(client, p["ann"]))["items"])[0] == ("bob", "rated", MOVIE, 2, t(5))


# -- replay -------------------------------------------------------------------------------------


async def _dump(pool: asyncpg.Pool[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: [tuple(r) for r in await pool.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
        for table, key in FEED_TABLES.items()
    }


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await db.connect(database_url)
    yield connection
    await connection.close()


async def test_verify_and_replay_agree_with_live_friendships_and_feeds(
    make_client: Callable[..., Any],
    database_url: str,
    conn: asyncpg.Connection[Any],
    pool: asyncpg.Pool[Any],
) -> None:
    client: TestClient[Any, Any] = await make_client(database_url)
    bob, srv = await setup_owner_with_server(client, "bob", "srv-b")
    p = {"bob": bob, **await people(client, "ann", "cy", "dee", "eve")}
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await befriend(client, ("cy", p["cy"]), ("ann", p["ann"]))
    await ask(client, p["dee"], "ann")
    await end(client, p["ann"], "dee")  # declined
    await ask(client, p["dee"], "ann")  # and asked again
    await ask(client, p["eve"], "bob")
    await end(client, p["eve"], "bob")  # withdrawn
    await befriend(client, ("eve", p["eve"]), ("cy", p["cy"]))
    await end(client, p["cy"], "eve")  # ended
    await ask(client, p["eve"], "cy")
    await set_visibility(client, p["bob"], "public")
    await set_visibility(client, p["cy"], "private")
    await set_visibility(client, p["cy"], "friends")
    await set_visibility(client, p["dee"], "private")
    for n, name in enumerate(("ann", "bob", "cy", "dee", "eve") * 2):
        await record(client, p[name], "watched", movie(n), t(n))
        await record(client, p[name], "rated", movie(n), t(-n), rating=1 + n % 10)
        await record(client, p[name], "unwatched", movie(n), t(n + 1))
    await send(
        client,
        "srv-b",
        srv,
        {"account": "bob", "type": "watched", "guid": EPISODE, "at": t(1), "baseline": True},
        {"account": "bob", "type": "watched", "guid": EPISODE_2, "at": t(2)},
    )
    for name, what in (("ann", "history"), ("cy", "state"), ("dee", "history"), ("dee", "state")):
        response = await client.delete(
            f"/v1/me/{what}", params={"confirm": "true"}, headers=p[name]
        )
        assert response.status == 200, await response.text()
    await record(client, p["ann"], "watched", MOVIE, t(20))
    await settle(client)
    live = await _dump(pool)
    assert all(live.values())
    assert (await verify(conn, all_projections(), slice_events=5)).ok

    await replay(conn, all_projections(), slice_events=1)  # each pair cut across slices
    await settle(client)

    assert await _dump(pool) == live
    assert (await verify(conn, all_projections())).ok


async def test_verify_finds_tampered_friendships_and_feeds(
    make_client: Callable[..., Any], database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    client: TestClient[Any, Any] = await make_client(database_url)
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await record(client, p["bob"], "watched", MOVIE, t(1))
    await settle(client)
    assert client.app is not None
    pool = client.app[POOL]
    assert (await verify(conn, all_projections())).ok
    for tamper, table in (
        ("DELETE FROM friend_requests WHERE account_id = 'bob'", "friend_requests"),
        ("UPDATE activity SET rating = 3", "activity"),
        ("UPDATE activity_profiles SET visibility = 'public'", "activity_profiles"),
    ):
        await pool.execute(tamper)
        report = await verify(conn, all_projections())
        assert table in {d.table for d in report.differences}, tamper
        await replay(conn, all_projections())
        assert (await verify(conn, all_projections())).ok


# -- the stream ---------------------------------------------------------------------------------

_BLOCK_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(r"\r\n|\r|\n")


@dataclass
class Block:
    """One block of an event stream: an event (``data`` set) or only comments."""

    id: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def activity(self) -> dict[str, Any]:
        assert self.data is not None
        decoded: dict[str, Any] = json.loads(self.data)
        assert set(decoded) == ACTIVITY_KEYS, decoded
        return decoded


class Stream:
    """The raw text of an event stream, block by block."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self._buffer = b""

    async def block(self) -> Block:
        while (end := _BLOCK_END.search(self._buffer)) is None:
            chunk = await self.response.content.readany()
            if not chunk:
                raise EOFError("the stream ended")
            self._buffer += chunk
        raw, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
        block = Block()
        for line in _LINE.split(raw.decode()):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                block.comments.append(value)
            elif name == "id":
                block.id = value
            elif name == "data":
                block.data = value if block.data is None else f"{block.data}\n{value}"
            else:
                raise AssertionError(f"unexpected line {line!r}")
        return block

    async def event(self, within: float = 5.0) -> Block:
        """The next event (comments skipped), within ``within`` seconds."""
        async with asyncio.timeout(within):
            while True:
                block = await self.block()
                if block.data is not None:
                    assert block.id, block
                    return block

    async def events(self, n: int, within: float = 5.0) -> list[Block]:
        return [await self.event(within) for _ in range(n)]


@contextlib.asynccontextmanager
async def streaming(
    client: TestClient[Any, Any], headers: Headers, last_event_id: str | None = None
) -> AsyncIterator[Stream]:
    extra = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    response = await client.get("/v1/me/feed/stream", headers={**headers, **extra})
    assert response.status == 200, await response.text()
    assert response.content_type == "text/event-stream"
    try:
        yield Stream(response)
    finally:
        response.close()


def guids(blocks: list[Block]) -> list[str]:
    return [b.activity["guid"] for b in blocks]


async def test_a_friends_action_is_streamed_within_a_second_as_one_event(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob", "cy", "pub")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await befriend(client, ("ann", p["ann"]), ("cy", p["cy"]))
    await set_visibility(client, p["pub"], "public")
    assert client.app is not None
    feeds = client.app[FRIENDS].feeds
    # Only a hint can wake a stream quickly now: the fallback poll is an hour.
    feeds.poll = 3600
    await record(client, p["cy"], "watched", MOVIE_2, t(0))  # the dispatcher now polls hourly

    async with streaming(client, p["ann"]) as stream:
        await record(client, p["ann"], "watched", EPISODE, t(1))  # ann's own
        await record(client, p["pub"], "watched", EPISODE, t(1))  # public, not a friend
        started = time.monotonic()
        event_id = await record(client, p["bob"], "rated", MOVIE, t(2), rating=8)
        first = await stream.event(within=1.0)
        assert time.monotonic() - started < 1.0
        assert first.activity == {
            "id": event_id,
            "actor": "bob",
            "type": "rated",
            "guid": MOVIE,
            "rating": 8,
            "at": t(2),
        }
        assert first.activity == (await feed(client, p["ann"], limit=1))["items"][0]
        # One event for one action: the next one is the next action.
        await record(client, p["cy"], "watched", MOVIE, t(3))
        second = await stream.event(within=1.0)
        assert (second.activity["actor"], second.activity["guid"]) == ("cy", MOVIE)
        assert second.id != first.id


async def test_a_stream_without_last_event_id_starts_now(client: TestClient[Any, Any]) -> None:
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    async with streaming(client, p["ann"]) as stream:  # nothing recorded at all yet
        await record(client, p["bob"], "watched", MOVIE, t(1))
        assert guids([await stream.event()]) == [MOVIE]
    for n in range(3):
        await record(client, p["bob"], "watched", movie(n), t(10 + n))
    async with streaming(client, p["ann"]) as stream:
        await record(client, p["bob"], "watched", EPISODE, t(0))
        assert guids([await stream.event()]) == [EPISODE]


async def test_last_event_id_resumes_with_no_gap_and_no_repeat(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob", "cy")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await befriend(client, ("ann", p["ann"]), ("cy", p["cy"]))
    async with streaming(client, p["ann"]) as stream:
        await record(client, p["bob"], "watched", movie(1), t(1))
        await record(client, p["cy"], "watched", movie(2), t(2))
        first, second = await stream.events(2)
    assert guids([first, second]) == [movie(1), movie(2)]

    # While disconnected (in the order recorded, whatever their `at`).
    missed = [
        await record(client, p["bob"], "watched", movie(3), t(-3)),
        await record(client, p["cy"], "rated", movie(4), t(4), rating=4),
        await record(client, p["bob"], "watched", movie(5), t(5)),
    ]
    assert second.id is not None
    assert first.id is not None
    async with streaming(client, p["ann"], last_event_id=second.id) as stream:
        resumed = await stream.events(3)
        assert [b.activity["id"] for b in resumed] == missed
        await record(client, p["bob"], "watched", movie(6), t(6))
        assert guids([await stream.event()]) == [movie(6)]  # nothing again in between
        last = resumed[-1].id
    # From further back: everything after that point, once.
    async with streaming(client, p["ann"], last_event_id=first.id) as stream:
        again = await stream.events(5)
        assert guids(again) == [movie(n) for n in (2, 3, 4, 5, 6)]
        assert again[3].id == last
        await record(client, p["cy"], "watched", movie(7), t(7))
        assert guids([await stream.event()]) == [movie(7)]


async def test_going_private_or_ending_the_friendship_stops_what_is_streamed(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob", "cy", "dee")
    for friend in ("bob", "cy", "dee"):
        await befriend(client, ("ann", p["ann"]), (friend, p[friend]))
    async with streaming(client, p["ann"]) as stream:
        await record(client, p["bob"], "watched", movie(1), t(1))
        assert guids([await stream.event()]) == [movie(1)]

        await set_visibility(client, p["bob"], "private")
        await record(client, p["bob"], "watched", movie(2), t(2))  # not sent
        await record(client, p["cy"], "watched", movie(3), t(3))
        assert guids([await stream.event()]) == [movie(3)]

        await end(client, p["cy"], "ann")
        await record(client, p["cy"], "watched", movie(4), t(4))  # not sent
        await record(client, p["dee"], "watched", movie(5), t(5))
        assert guids([await stream.event()]) == [movie(5)]

        # Visible again, and friends again: new activity is streamed again.
        await set_visibility(client, p["bob"], "friends")
        await befriend(client, ("cy", p["cy"]), ("ann", p["ann"]))
        await record(client, p["bob"], "watched", movie(6), t(6))
        await record(client, p["cy"], "watched", movie(7), t(7))
        assert guids(await stream.events(2)) == [movie(6), movie(7)]


async def test_a_private_friends_activity_wakes_no_stream_and_is_passed_for_good(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob", "cy")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await befriend(client, ("ann", p["ann"]), ("cy", p["cy"]))
    await set_visibility(client, p["bob"], "private")
    assert client.app is not None
    feeds, pool = client.app[FRIENDS].feeds, client.app[POOL]
    async with streaming(client, p["ann"]) as stream:
        await until(lambda: feeds.streams == 1)
        wakeups = feeds.for_reader("ann")
        generation = wakeups.generation
        await record(client, p["bob"], "watched", movie(1), t(1))
        await settle(client)
        row = await pool.fetchrow("SELECT transaction_id, position FROM activity")
        hidden = LogCursor(row[0], row[1])
        await until(lambda: feeds.through is not None and feeds.through >= hidden)
        assert wakeups.generation == generation  # nothing for ann to read: not even woken

        await record(client, p["cy"], "watched", movie(2), t(2))
        assert guids([await stream.event()]) == [movie(2)]
        # The stream has read past bob's item (hidden when it got there): bob letting friends
        # see again shows it in the feed's pages at once, but a stream sends only what comes.
        await set_visibility(client, p["bob"], "friends")
        await record(client, p["cy"], "watched", movie(3), t(3))
        assert guids([await stream.event()]) == [movie(3)]
    assert [i["guid"] for i in (await feed(client, p["ann"]))["items"]] == [
        movie(3),
        movie(2),
        movie(1),
    ]


async def test_one_action_woken_streams_all_get_it_read_together(
    client: TestClient[Any, Any],
) -> None:
    """Fan-out on read's worst case in small: an account that every streaming reader is
    friends with acts, and each stream (two per reader) gets its action once."""
    readers = [f"r{i}" for i in range(12)]
    p = await people(client, "star", "shy", *readers)
    for reader in readers:
        await befriend(client, ("star", p["star"]), (reader, p[reader]))
    await befriend(client, ("r0", p["r0"]), ("shy", p["shy"]))
    await set_visibility(client, p["shy"], "private")
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(streaming(client, p[reader]))
            for reader in readers
            for _ in range(2)
        ]
        await record(client, p["shy"], "watched", movie(0), t(0))  # not for r0's streams
        await record(client, p["star"], "watched", movie(1), t(1))
        got = await asyncio.gather(*(stream.event() for stream in streams))
        assert guids(got) == [movie(1)] * len(streams)
        await record(client, p["star"], "watched", movie(2), t(2))
        got = await asyncio.gather(*(stream.event() for stream in streams))
        assert guids(got) == [movie(2)] * len(streams)


async def test_reads_together_give_each_stream_what_its_own_read_gives(
    client: TestClient[Any, Any],
) -> None:
    p = await people(client, "ann", "bob", "cy", "dee")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    await befriend(client, ("cy", p["cy"]), ("bob", p["bob"]))
    await befriend(client, ("cy", p["cy"]), ("dee", p["dee"]))
    for n in range(4):
        await record(client, p["bob"], "watched", movie(n), t(n))
        await record(client, p["dee"], "rated", movie(10 + n), t(n), rating=n + 1)
    await settle(client)
    assert client.app is not None
    pool = client.app[POOL]
    cursors = [
        LogCursor(r[0], r[1])
        for r in await pool.fetch(
            "SELECT transaction_id, position FROM activity ORDER BY transaction_id, position"
        )
    ]
    reads: list[tuple[str, LogCursor, LogCursor | None]] = [
        ("ann", LogCursor.START, None),
        ("cy", cursors[2], cursors[-2]),
        ("cy", cursors[2], cursors[-2]),  # the same read twice: asked once
        ("cy", cursors[0], None),
        ("dee", LogCursor.START, None),  # dee's one friend has done nothing
        ("nobody", LogCursor.START, None),
        ("cy", cursors[-1], None),  # nothing after the newest
    ]
    # Each read on its own, then all in one statement, then through the batcher.
    alone = [
        await activity_reads.feed_after(pool, viewer, after, through, 500)
        for viewer, after, through in reads
    ]
    together = await activity_reads.feed_after_many(pool, reads, 500)
    batched = StreamReads(pool, concurrency=2)
    gathered = await asyncio.gather(*(batched.read(*read) for read in reads))

    assert together == alone == gathered
    assert [len(items) for items in alone] == [4, 4, 4, 7, 0, 0, 0]
    assert [i.guid for i in alone[0]] == [movie(n) for n in range(4)]  # ann: bob's only
    # cy: bob's and dee's, in the order recorded, after the cursor.
    assert [i.guid for i in alone[3]] == [
        movie(10),
        movie(1),
        movie(11),
        movie(2),
        movie(12),
        movie(3),
        movie(13),
    ]
    # The limit holds for each read on its own.
    limited = await activity_reads.feed_after_many(pool, reads, 3)
    assert limited == [items[:3] for items in alone]


async def test_deleted_activity_is_not_streamed_on_resume(client: TestClient[Any, Any]) -> None:
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    async with streaming(client, p["ann"]) as stream:
        await record(client, p["bob"], "watched", movie(1), t(1))
        [first] = await stream.events(1)
    await record(client, p["bob"], "watched", movie(2), t(2))
    await record(client, p["bob"], "rated", movie(3), t(3), rating=5)
    response = await client.delete("/v1/me/history", params={"confirm": "true"}, headers=p["bob"])
    assert response.status == 200
    assert first.id is not None
    async with streaming(client, p["ann"], last_event_id=first.id) as stream:
        assert guids([await stream.event()]) == [movie(3)]


async def test_heartbeats_keep_an_idle_stream_alive(make_client: Callable[..., Any]) -> None:
    client: TestClient[Any, Any] = await make_client(stream_heartbeat=0.2)
    ann = await create_account(client, "ann")
    async with streaming(client, ann) as stream:
        async with asyncio.timeout(3):
            pings = [await stream.block(), await stream.block()]
    assert pings == [Block(comments=["ping"])] * 2


async def test_a_client_that_goes_releases_its_stream_and_slot(
    make_client: Callable[..., Any],
) -> None:
    # No heartbeat to find the client gone by: its closed connection is noticed by itself.
    client: TestClient[Any, Any] = await make_client(stream_heartbeat=3600, max_streams_per_token=1)
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    assert client.app is not None
    feeds, slots = client.app[FRIENDS].feeds, client.app[STREAM_SLOTS]
    slots.sweep = 0.05

    async with streaming(client, ann):
        await until(lambda: feeds.streams == 1)
        held = feeds.for_reader("ann")
        response = await client.get("/v1/me/feed/stream", headers=ann)
        assert response.headers["Retry-After"]
        await problem(response, 429, "rate_limited")
        async with streaming(client, bob):  # a slot per token
            await until(lambda: feeds.streams == 2)
    await until(lambda: feeds.streams == 0 and slots.held(Principal("account", "ann")) == 0)
    assert feeds.for_reader("ann") is not held  # nothing kept for a reader gone

    async with streaming(client, ann):  # the slot is free again
        await until(lambda: feeds.streams == 1)


async def test_more_streams_than_a_token_may_hold_are_429(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    assert client.app is not None
    most = client.app[STREAM_SLOTS].per_token
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(most):
            await stack.enter_async_context(streaming(client, ann))
        response = await client.get("/v1/me/feed/stream", headers=ann)
        await problem(response, 429, "rate_limited")


async def test_a_last_event_id_this_api_did_not_issue_is_422(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    assert client.app is not None
    for last in (
        "not a cursor!",
        encode_cursor(["2026-01-01T00:00:00Z", 1]),  # a page's cursor
        encode_cursor([1]),
        encode_cursor([-1, 5]),
        encode_cursor([2**64, 5]),
        encode_cursor("1,2"),
    ):
        response = await client.get("/v1/me/feed/stream", headers={**ann, "Last-Event-ID": last})
        await problem(response, 422, "invalid_request")
    assert client.app[FRIENDS].feeds.streams == 0
    assert client.app[STREAM_SLOTS].held(Principal("account", "ann")) == 0


async def test_a_stream_ends_when_the_service_stops(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    assert client.app is not None
    async with streaming(client, ann) as stream:
        await until(lambda: client.app is not None and client.app[FRIENDS].feeds.streams == 1)
        client.app[FRIENDS].feeds.close()  # what shutting down does first
        with pytest.raises(EOFError):
            async with asyncio.timeout(5):
                await stream.block()


async def _dead_letters(pool: asyncpg.Pool[Any]) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT projection, position, type FROM projection_dead_letters"
        " ORDER BY projection, position"
    )
    return [tuple(r) for r in rows]


async def test_events_the_rebuild_leaves_out_are_dead_letters_live_too(
    make_client: Callable[..., Any],
    database_url: str,
    conn: asyncpg.Connection[Any],
    store: EventStore,
) -> None:
    """A log may hold what the service never writes (an import takes any event in any
    stream): whatever the set-based rebuild leaves out, the live fold dead-letters, and
    everything else both fold alike."""
    client: TestClient[Any, Any] = await make_client(database_url)
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    odd = [
        (watch_stream("bob"), Watched(guid="no title id", at=T0)),
        (watch_stream("bob"), Rated(guid="PLEX://MOVIE/5d776825880197001ec967c6", at=T0, rating=5)),
        (account_stream("bob"), Watched(guid=MOVIE, at=T0)),
        (account_stream("bob"), Rated(guid=MOVIE, at=T0, rating=5)),
        (watch_stream("bob"), VisibilityChanged(visibility="public")),
        (watch_stream("bob"), FriendRequested(account="cy")),
        (watch_stream("bob"), FriendRemoved(account="ann")),
        (
            watch_stream("bob"),
            AccountCreated(account_id="bob", kind="full", name="B", token_hash="x"),
        ),
    ]
    for stream, event in odd:
        await store.append(stream, [registry.new(event)])
    await record(client, p["bob"], "watched", MOVIE_2, t(1))
    await settle(client)
    projections: list[Projection] = all_projections()
    live, letters = await _dump(client.app[POOL]), await _dead_letters(client.app[POOL])
    assert [(name, type_) for name, _, type_ in letters] == [
        ("activity", "watched"),
        ("activity", "rated"),
        ("activity", "watched"),
        ("activity", "rated"),
        ("activity", "visibility_changed"),
        ("friends", "friend_requested"),
        ("friends", "friend_removed"),
        # The watch state and history folds leave out the same odd watch events.
        ("watch_history", "watched"),
        ("watch_history", "watched"),
        ("watch_state", "watched"),
        ("watch_state", "rated"),
        ("watch_state", "watched"),
        ("watch_state", "rated"),
    ]
    assert (await verify(conn, projections)).ok

    await replay(conn, projections)
    await settle(client)

    assert await _dump(client.app[POOL]) == live
    assert await _dead_letters(client.app[POOL]) == letters
    # And what a reader sees is only what the service itself recorded.
    assert shown((await feed(client, p["ann"]))["items"]) == [
        ("bob", "watched", MOVIE_2, None, t(1))
    ]
    status, _ = await activity(client, p["ann"], "bob")
    assert status == 200  # still "friends": the odd visibility change was not folded


async def until_the_end(stream: Stream) -> bool:
    """Read (heartbeats, say) until the stream ends: True then."""
    try:
        while True:
            await stream.block()
    except EOFError:
        return True


async def recorded_after_outage(
    client: TestClient[Any, Any], headers: Headers, guid: str, at: str
) -> None:
    """Record a watched action just after an outage, when the first requests may still meet
    a broken connection (503): until one is recorded."""
    action = {"actions": [{"type": "watched", "guid": guid, "at": at}]}
    async with asyncio.timeout(10):
        while True:
            response = await client.post("/v1/me/actions", json=action, headers=headers)
            if response.status == 200:
                return
            await problem(response, 503, "database_unavailable")
            await asyncio.sleep(0.05)  # as Retry-After says, only shorter


@pytest.fixture
async def behind_proxy(
    make_database: Callable[..., Any], make_client: Callable[..., Any]
) -> AsyncIterator[tuple[PostgresProxy, TestClient[Any, Any]]]:
    """A service (heartbeats every 0.2 s) whose database the test can stop and start."""
    proxy = PostgresProxy(await make_database())
    await proxy.start()
    client: TestClient[Any, Any] = await make_client(proxy.url, stream_heartbeat=0.2)
    yield proxy, client
    if not proxy.listening:
        await proxy.start()
    await client.close()
    await proxy.stop()


async def test_an_idle_stream_outlives_a_database_outage(
    behind_proxy: tuple[PostgresProxy, TestClient[Any, Any]],
) -> None:
    proxy, client = behind_proxy
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    assert client.app is not None
    async with streaming(client, p["ann"]) as stream:
        async with asyncio.timeout(5):  # it has read what there was, and waits
            await client.app[FRIENDS].feeds.for_reader("ann").until_waiting(1)
        await proxy.stop()
        async with asyncio.timeout(3):
            assert (await stream.block()).comments == ["ping"]  # still there
            assert (await stream.block()).comments == ["ping"]
        await proxy.start()
        await recorded_after_outage(client, p["bob"], MOVIE, t(1))
        assert guids([await stream.event(within=10)]) == [MOVIE]


async def test_a_stream_that_meets_a_database_outage_ends_and_resumes_after_it(
    behind_proxy: tuple[PostgresProxy, TestClient[Any, Any]],
) -> None:
    proxy, client = behind_proxy
    p = await people(client, "ann", "bob")
    await befriend(client, ("ann", p["ann"]), ("bob", p["bob"]))
    assert client.app is not None
    feeds = client.app[FRIENDS].feeds
    async with streaming(client, p["ann"]) as stream:
        await record(client, p["bob"], "watched", movie(1), t(1))
        [first] = await stream.events(1)
        await proxy.stop()
        with structlog.testing.capture_logs() as logs:
            feeds.for_reader("ann").wake()  # as a hint would: the stream reads, and fails
            async with asyncio.timeout(5):
                ended = await until_the_end(stream)
        assert ended  # it ends (never hangs): its client reconnects
        assert [e["event"] for e in logs if e["log_level"] == "error"] == []
        assert "feed_stream_interrupted" in [e["event"] for e in logs]
    assert first.id is not None
    response = await client.get(
        "/v1/me/feed/stream", headers={**p["ann"], "Last-Event-ID": first.id}
    )
    await problem(response, 503, "database_unavailable")
    await until(lambda: feeds.streams == 0)

    await proxy.start()
    await recorded_after_outage(client, p["bob"], movie(2), t(2))
    async with streaming(client, p["ann"], last_event_id=first.id) as stream:
        assert guids([await stream.event()]) == [movie(2)]
