"""One title, many ids, per account (product rule 1b): ids sent together name one title, titles
sharing an id are one, and a merge decides the state over all the titles' events, whatever the
order they came in; lookups by any id; links never cross accounts; merged states reach servers
once, with every id; counts, history, baselines and deletions by title."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EventStore, NewEvent
from eventstore.database import Connection
from projections import domain
from projections.domain import (
    ReportedAction,
    TitleLinks,
    decide_action,
    id_rank,
    lookup_id,
    natural_key,
    shown_order,
)
from projections.state import WatchStateProjection
from tests.api import MOVIE, MOVIE_2, T0, create_account, post_actions, settle, t
from tests.servers import pull, send, setup_owner_with_server, sync
from tests.test_api_state import all_state, in_two_orders, state_of
from tests.test_titles import valid_ids

IMDB = "imdb://movie/tt0111161"
TMDB = "tmdb://movie/278"
TVDB = "tvdb://movie/190"
IMDB_2 = "imdb://movie/tt0068646"
TMDB_2 = "tmdb://movie/238"


def watched(guid: str, at: str, *ids: str) -> dict[str, Any]:
    return {"type": "watched", "guid": guid, "at": at, **({"ids": list(ids)} if ids else {})}


def rated(guid: str, at: str, rating: int, *ids: str) -> dict[str, Any]:
    return {"type": "rated", "guid": guid, "at": at, "rating": rating, "ids": list(ids)}


async def history(
    client: TestClient[Any, Any], headers: dict[str, str], **query: str
) -> list[dict[str, Any]]:
    response = await client.get("/v1/me/history", params=query, headers=headers)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


async def counts(client: TestClient[Any, Any], headers: dict[str, str]) -> dict[str, int]:
    body = await (await client.get("/v1/me", headers=headers)).json()
    result: dict[str, int] = body["counts"]
    return result


async def test_ids_sent_together_name_one_title_found_by_any_of_them(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    upper = "plex://movie/" + MOVIE.rsplit("/", 1)[1].upper()  # stored lowercase
    await post_actions(client, ann, watched(IMDB, t(1), TMDB, upper))
    await settle(client)

    items = await all_state(client, ann)
    assert [(i["guid"], i["ids"]) for i in items] == [(MOVIE, [MOVIE, IMDB, TMDB])]
    for one in (MOVIE, IMDB, TMDB, upper):
        state = await state_of(client, ann, one)
        assert (state["guid"], state["ids"]) == (MOVIE, [MOVIE, IMDB, TMDB])
        assert (state["watched"], state["watched_at"]) == (True, t(1))
    for never in (TVDB, IMDB_2, "imdb://movie/x"):
        response = await client.get(f"/v1/me/state/{quote(never, safe='')}", headers=ann)
        assert response.status == 404


async def test_titles_sharing_an_id_become_one_decided_over_all_their_events(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client,
        ann,
        watched(IMDB, t(1)),
        rated(TMDB, t(2), 7),
        {"type": "unwatched", "guid": MOVIE, "at": t(3)},
    )
    await settle(client)
    assert len(await all_state(client, ann)) == 3

    # Older than what decides either part: the link changes nothing but which titles are one.
    await post_actions(client, ann, watched(TMDB, t(0), IMDB))
    await settle(client)
    merged, plex = await all_state(client, ann)  # in guid order
    assert (plex["guid"], plex["ids"]) == (MOVIE, [MOVIE])
    assert (merged["guid"], merged["ids"]) == (IMDB, [IMDB, TMDB])
    assert (merged["watched"], merged["watched_at"]) == (True, t(1))
    assert (merged["rating"], merged["rated_at"]) == (7, t(2))

    # Transitively: the Plex title joins it, and its later unwatched decides.
    await post_actions(
        client, ann, {"type": "unrated", "guid": TVDB, "at": t(-1), "ids": [MOVIE, TMDB]}
    )
    await settle(client)
    (merged,) = await all_state(client, ann)
    assert (merged["guid"], merged["ids"]) == (MOVIE, [MOVIE, IMDB, TMDB, TVDB])
    assert (merged["watched"], merged["watched_at"]) == (False, t(3))
    assert (merged["rating"], merged["rated_at"]) == (7, t(2))
    assert await state_of(client, ann, TVDB) == merged


async def test_history_and_counts_are_by_title_whichever_id_a_record_used(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(
        client, ann, watched(IMDB, t(1)), watched(TMDB, t(2)), watched(MOVIE_2, t(3))
    )
    await settle(client)
    assert await counts(client, ann) == {"movies": 3, "episodes": 0}

    await post_actions(client, ann, rated(MOVIE, t(4), 9, IMDB, TMDB))
    await settle(client)
    assert await counts(client, ann) == {"movies": 2, "episodes": 0}
    records = await history(client, ann)
    assert [(r["guid"], r["at"]) for r in records] == [
        (MOVIE_2, t(3)),
        (MOVIE, t(2)),
        (MOVIE, t(1)),
    ]
    for one in (MOVIE, IMDB, TMDB):
        assert [r["at"] for r in await history(client, ann, guid=one)] == [t(2), t(1)]
    assert await history(client, ann, guid=TVDB) == []


async def test_links_never_cross_accounts(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    bob = await create_account(client, "bob")
    await post_actions(client, ann, watched(IMDB, t(1), TMDB))
    await post_actions(client, bob, watched(IMDB, t(1)), rated(TMDB, t(2), 3))
    await settle(client)

    bobs = await all_state(client, bob)
    assert sorted((i["guid"], i["ids"]) for i in bobs) == [(IMDB, [IMDB]), (TMDB, [TMDB])]
    assert (await state_of(client, bob, TMDB))["watched"] is False
    assert await counts(client, bob) == {"movies": 1, "episodes": 0}
    assert (await state_of(client, ann, TMDB))["ids"] == [IMDB, TMDB]


async def test_a_change_carries_every_id_and_a_merge_reaches_servers_once(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    _, cursor = await pull(client, "srv-a", srv)
    await post_actions(client, ann, watched(IMDB, t(1)), rated(TMDB, t(2), 6))
    await settle(client)
    changes, cursor = await pull(client, "srv-a", srv, cursor)
    assert sorted((c["guid"], c["ids"]) for c in changes) == [(IMDB, [IMDB]), (TMDB, [TMDB])]

    # Two titles with a state become one: the merged state, once, with all its ids.
    await post_actions(client, ann, watched(IMDB, t(0), TMDB))
    await settle(client)
    changes, cursor = await pull(client, "srv-a", srv, cursor)
    assert changes == [
        {
            "kind": "state",
            "account": "ann",
            "guid": IMDB,
            "ids": [IMDB, TMDB],
            "watched": True,
            "watched_at": t(1),
            "rating": 6,
            "rated_at": t(2),
        }
    ]

    # A new id for a title changes no state: nothing to send.
    await post_actions(client, ann, watched(MOVIE, t(0), IMDB))
    await settle(client)
    nothing, cursor = await pull(client, "srv-a", srv, cursor)
    assert nothing == []

    # A pending change follows its title to its new guid, and comes once.
    await post_actions(client, ann, watched(IMDB_2, t(5)))
    await post_actions(client, ann, rated(MOVIE_2, t(0), 2, IMDB_2))
    await settle(client)
    changes, _ = await pull(client, "srv-a", srv, cursor)
    assert [(c["guid"], c["ids"], c["watched"], c["rating"]) for c in changes] == [
        (MOVIE_2, [MOVIE_2, IMDB_2], True, 2)
    ]


async def test_a_baseline_counts_only_as_the_first_record_of_its_title(
    client: TestClient[Any, Any],
) -> None:
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    await post_actions(client, ann, watched(IMDB, t(1)), watched(IMDB_2, t(1)))
    base = {"account": "ann", "type": "watched", "baseline": True}
    await send(
        client,
        "srv-a",
        srv,
        {**base, "guid": MOVIE, "ids": [IMDB], "at": t(5)},  # the title has history already
        {**base, "guid": MOVIE_2, "at": t(5)},  # not linked (yet): a title of its own
        {**base, "guid": TVDB, "at": t(5)},
    )
    await settle(client)
    # Newest first; on equal times, the later recorded first.
    assert [(r["guid"], r["at"]) for r in await history(client, ann)] == [
        (TVDB, t(5)),
        (MOVIE_2, t(5)),
        (IMDB_2, t(1)),
        (MOVIE, t(1)),
    ]
    assert (await state_of(client, ann, IMDB))["watched_at"] == t(5)  # still last-writer-wins

    # Once linked, the baseline record is not the first of its title: as if always one.
    await post_actions(client, ann, rated(IMDB_2, t(0), 5, MOVIE_2))
    await settle(client)
    assert [(r["guid"], r["at"]) for r in await history(client, ann)] == [
        (TVDB, t(5)),
        (MOVIE_2, t(1)),
        (MOVIE, t(1)),
    ]
    assert await counts(client, ann) == {"movies": 3, "episodes": 0}
    await sync(client, ann, False)


async def test_deletions_keep_titles_as_the_log_still_links_them(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    await post_actions(client, ann, watched(IMDB, t(1), TMDB), rated(MOVIE, t(2), 8, TMDB))
    await settle(client)
    before = await all_state(client, ann)
    assert [i["ids"] for i in before] == [[MOVIE, IMDB, TMDB]]

    # History goes; the state, and the title it belongs to, do not.
    response = await client.delete("/v1/me/history?confirm=true", headers=ann)
    assert (await response.json())["deleted"] == 1
    await settle(client)
    assert await all_state(client, ann) == before
    assert await counts(client, ann) == {"movies": 0, "episodes": 0}

    # The state goes: one title, counted once.
    response = await client.delete("/v1/me/state?confirm=true", headers=ann)
    assert (await response.json())["deleted"] == 1


async def test_the_feed_shows_a_title_under_its_guid(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    await post_actions(client, ann, watched(IMDB, t(1)))
    await post_actions(client, ann, rated(MOVIE, t(0), 4, IMDB))
    await settle(client)
    page = await (await client.get("/v1/accounts/ann/activity", headers=ann)).json()
    assert [(a["type"], a["guid"]) for a in page["items"]] == [("watched", MOVIE), ("rated", MOVIE)]


# -- order independence, with merges ------------------------------------------------------------

TITLES = [[MOVIE, IMDB, TMDB], [MOVIE_2, IMDB_2, TMDB_2]]
merging_actions = st.lists(
    st.tuples(
        st.sampled_from(["watched", "unwatched", "rated", "unrated"]),
        st.sampled_from(TITLES).flatmap(
            lambda ids: st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True)
        ),
        st.integers(min_value=1, max_value=10),
    ),
    min_size=1,
    max_size=20,
).map(
    # Distinct times: on equal times the later recorded wins by design.
    lambda items: [
        {
            "type": kind,
            "guid": ids[0],
            "ids": ids[1:],
            "at": t(i),
            **({"rating": rating} if kind == "rated" else {}),
        }
        for i, (kind, ids, rating) in enumerate(items)
    ]
)


def expected(actions: list[dict[str, Any]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the rules give, worked out in Python: (state items in guid order, history)."""
    links = TitleLinks()
    for action in actions:
        links.link(action["guid"], *action["ids"])
    members: dict[str, set[str]] = {}
    for action in actions:
        for one in (action["guid"], *action["ids"]):
            members.setdefault(links.title(one), set()).add(one)
    watch: dict[str, dict[str, Any]] = {}
    rating: dict[str, dict[str, Any]] = {}
    records = []
    for action in actions:  # distinct times: the latest `at` decides, whatever the order
        title = links.title(action["guid"])
        decided = watch if action["type"] in ("watched", "unwatched") else rating
        if title not in decided or decided[title]["at"] < action["at"]:
            decided[title] = action
        if action["type"] in ("watched", "unwatched"):
            records.append((title, action["type"], action["at"]))
    state = []
    for title in sorted(members):
        w, r = watch.get(title), rating.get(title)
        rated_now = r is not None and r["type"] == "rated"
        if w is None and not rated_now:
            continue  # neither a watch record nor a rating: absent
        state.append(
            (
                title,
                shown_order(members[title]),
                w is not None and w["type"] == "watched",
                None if w is None else w["at"],
                r["rating"] if rated_now and r is not None else None,
                None if r is None else r["at"],
            )
        )
    return state, sorted(records, key=lambda record: record[2], reverse=True)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=merging_actions, seed=st.integers(0, 2**32 - 1))
async def test_merges_in_any_order_give_the_state_the_union_of_events_gives(
    client: TestClient[Any, Any], actions: list[dict[str, Any]], seed: int
) -> None:
    first, second = await in_two_orders(client, actions, seed)

    state, records = expected(actions)
    for account in (first, second):
        items = await all_state(client, account)
        assert [
            (i["guid"], i["ids"], i["watched"], i["watched_at"], i["rating"], i["rated_at"])
            for i in items
        ] == state
        got = await history(client, account, limit="100")
        assert [(h["guid"], h["type"], h["at"]) for h in got] == records


# -- rule 5 across ids --------------------------------------------------------------------------


async def test_an_echo_under_other_ids_and_a_coarser_time_is_a_duplicate(
    client: TestClient[Any, Any],
) -> None:
    """Server B reports back the change it was sent, under its own ids for the title and with
    its time cut to the second (Emby): the same action (rule 5), however the ids overlap."""
    ann, srv = await setup_owner_with_server(client, "ann", "srv-a")
    at = "2026-03-01T19:00:00.734512Z"
    [first] = await post_actions(client, ann, watched(MOVIE, at, IMDB))
    assert first["status"] == "recorded"

    echoes = await send(
        client,
        "srv-a",
        srv,
        # By the external id only, to the second.
        {"account": "ann", "type": "watched", "guid": IMDB, "at": "2026-03-01T19:00:00Z"},
        # With an id never seen besides, at another fraction of the second.
        {**watched(TMDB, "2026-03-01T19:00:00.1Z", IMDB), "account": "ann"},
    )
    assert [e["status"] for e in echoes] == ["duplicate", "duplicate"]
    by_app = await post_actions(client, ann, watched(TVDB, "2026-03-01T19:00:00.999Z", MOVIE))
    assert by_app == [{"status": "duplicate"}]

    # Not the same action: no shared id, another second, another type, another rating.
    results = await post_actions(
        client,
        ann,
        watched(TMDB, at),
        watched(IMDB, "2026-03-01T19:00:01Z"),
        {"type": "unwatched", "guid": IMDB, "at": at},
        rated(IMDB, at, 7),
        rated(TMDB, "2026-03-01T19:00:00.2Z", 7, IMDB),
        rated(IMDB, at, 8),
    )
    assert [r["status"] for r in results] == ["recorded"] * 4 + ["duplicate", "recorded"]
    await settle(client)
    records = await history(client, ann, limit="100")
    assert len(records) == 4  # two watched, one unwatched at the same time, one watched


async def test_actions_sharing_an_id_in_one_request_are_one(client: TestClient[Any, Any]) -> None:
    ann = await create_account(client, "ann")
    at = "2026-03-01T19:00:00.5Z"
    results = await post_actions(
        client,
        ann,
        watched(MOVIE, at, IMDB),
        watched(TMDB, "2026-03-01T19:00:00Z", IMDB),  # shares IMDB
        watched(TVDB, at),  # shares nothing
        watched(TVDB, at, TMDB),  # shares TVDB with the one before
    )
    assert [r["status"] for r in results] == ["recorded", "duplicate", "recorded", "duplicate"]


async def test_a_client_id_still_names_its_action_and_its_ids_still_find_echoes(
    client: TestClient[Any, Any],
) -> None:
    ann = await create_account(client, "ann")
    client_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    [first] = await post_actions(client, ann, {**watched(MOVIE, t(1), IMDB), "id": client_id})
    # A retry with the client id, whatever else it says.
    [retry] = await post_actions(client, ann, {**watched(TMDB, t(3)), "id": client_id})
    # An echo without it, under one of the ids.
    [echo] = await post_actions(client, ann, watched(IMDB, t(1)))
    assert first["status"] == "recorded"
    assert retry == echo == {"status": "duplicate"}


id_pool = st.sampled_from([MOVIE, IMDB, TMDB, TVDB])


@settings(max_examples=200, deadline=None)
@given(
    first=st.sets(id_pool, min_size=1),
    second=st.sets(id_pool, min_size=1),
    fractions=st.tuples(st.integers(0, 999_999), st.integers(0, 999_999)),
    seconds=st.tuples(st.integers(0, 1), st.integers(0, 1)),
    ratings=st.tuples(st.sampled_from([None, 7, 8]), st.sampled_from([None, 7, 8])),
)
def test_two_actions_share_a_natural_key_exactly_when_rule_5_says_they_are_one(
    first: set[str],
    second: set[str],
    fractions: tuple[int, int],
    seconds: tuple[int, int],
    ratings: tuple[int | None, int | None],
) -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    decided = []
    for ids, fraction, second_, rating in zip(
        (sorted(first), sorted(second)), fractions, seconds, ratings, strict=True
    ):
        at = datetime(2026, 3, 1, 19, 0, second_, fraction, tzinfo=UTC)
        action = ReportedAction(
            type="watched" if rating is None else "rated",
            guid=ids[0],
            ids=tuple(ids[1:]),
            at=at,
            rating=rating,
        )
        event = decide_action("ann", action, now)
        assert isinstance(event, NewEvent)
        decided.append(event)
    one = bool(first & second) and seconds[0] == seconds[1] and ratings[0] == ratings[1]
    assert bool(decided[0].keys & decided[1].keys) == one
    # Another account's same action is never the same.
    other = decide_action("bob", ReportedAction(type="watched", guid=MOVIE, at=now), now)
    mine = decide_action("ann", ReportedAction(type="watched", guid=MOVIE, at=now), now)
    assert isinstance(other, NewEvent)
    assert isinstance(mine, NewEvent)
    assert not other.keys & mine.keys


_account_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=64)
_times = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    account=_account_ids,
    title_id=valid_ids.map(lambda valid: lookup_id(valid[0])),
    action=st.sampled_from(["watched", "unwatched", "rated", "unrated"]),
    at=_times,
    rating=st.one_of(st.none(), st.integers(1, 10)),
)
async def test_the_database_keys_an_action_as_the_domain_does(
    pool: asyncpg.Pool[Any],
    account: str,
    title_id: str,
    action: str,
    at: datetime,
    rating: int | None,
) -> None:
    """Migration projections/0008 keyed the actions recorded before with the database's twin of
    the domain's natural_key: the two must agree, or an old action's echo would be new."""
    in_sql = await pool.fetchval(
        "SELECT watch_action_key($1, $2, $3, $4, $5)", account, title_id, action, at, rating
    )
    key = natural_key(account, title_id, action, at, rating)
    assert in_sql == key
    # Made without uuid.UUID's checks, it is a UUID like any other.
    made = uuid.UUID(key.hex)
    assert (key.version, key.variant, str(key), hash(key)) == (
        8,
        uuid.RFC_4122,
        str(made),
        hash(made),
    )
    assert key == made
    assert made in {key}


# -- the database orders ids as the domain does ------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=st.lists(valid_ids, min_size=1, max_size=12))
async def test_the_database_shows_ids_in_the_domains_order(
    pool: asyncpg.Pool[Any], ids: list[tuple[str, str]]
) -> None:
    normalised = [lookup_id(text) for text, _ in ids]
    rows = await pool.fetch(
        'SELECT x FROM unnest($1::text[]) AS x ORDER BY title_id_rank(x), x COLLATE "C"',
        sorted(set(normalised)),
    )
    assert [row["x"] for row in rows] == shown_order(normalised)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(
        st.one_of(
            valid_ids.map(lambda pair: pair[0]),
            # Near-misses a stored event could hold: schemes without `//`, newlines, odd tails.
            st.from_regex(
                r"(plex|imdb|tmdb|tvdb|x)(:|://)[a-z/\n]{0,6}(/s[0-9]{1,3}e[0-9]{1,3})?",
                fullmatch=True,
            ),
            st.text(
                alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"),
                max_size=12,
            ),
        ),
        min_size=1,
        max_size=12,
        unique=True,
    )
)
async def test_the_domain_ranks_any_text_as_the_database_does(
    pool: asyncpg.Pool[Any], ids: list[str]
) -> None:
    """The projection tells the database the title a set of ids names (the first by id_rank):
    for any text a stored event may hold, the title title_link would choose."""
    rows = await pool.fetch(
        'SELECT x FROM unnest($1::text[]) AS x ORDER BY title_id_rank(x), x COLLATE "C"', ids
    )
    assert [row["x"] for row in rows] == sorted(ids, key=id_rank)


# -- the batch's first links, made before its folds, change no row -----------------------------

_pool_ids = st.sampled_from([MOVIE, IMDB, TMDB, TVDB, MOVIE_2, IMDB_2, TMDB_2])
_actions = st.lists(
    st.tuples(
        st.sets(_pool_ids, min_size=1, max_size=3),
        st.sampled_from(["watched", "unwatched", "rated"]),
        st.integers(0, 50),
    ),
    min_size=1,
    max_size=10,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.lists(st.lists(_pool_ids, min_size=1, max_size=3), max_size=4),
    ids=st.lists(_pool_ids, min_size=1, max_size=4),
    told=st.integers(0, 3),
    twice=st.booleans(),
)
async def test_a_fold_told_its_title_links_as_title_link_does(
    pool: asyncpg.Pool[Any], before: list[list[str]], ids: list[str], told: int, twice: bool
) -> None:
    """title_link_titled (the fold, told which title the ids name) gives what title_link
    gives, and the same links — told the right title or a wrong one, with an id given twice,
    after any links."""
    title = ids[told % len(ids)]
    others = [i for i in ids if i != title] + ([ids[-1]] if twice and ids[-1] != title else [])
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            for linked in before:
                await conn.fetchval("SELECT title_link('ann', $1::text[], true)", linked)
            answers = []
            for call in (
                "SELECT title_link('ann', $1::text[], true)",
                "SELECT title_link_titled('ann', $1, $2::text[], true)",
            ):
                inner = conn.transaction()
                await inner.start()
                args = (ids,) if "titled" not in call else (title, others)
                answers.append(
                    (
                        await conn.fetchval(call, *args),
                        [tuple(r) for r in await conn.fetch("SELECT * FROM title_ids ORDER BY id")],
                    )
                )
                await inner.rollback()
        finally:
            await tx.rollback()
    assert answers[0] == answers[1]


async def _fold(conn: Connection, ops: list[Any]) -> dict[str, list[Any]]:
    """Run the ops in a transaction that is rolled back; the rows they gave."""
    tables = {
        "watch_state": "SELECT * FROM watch_state ORDER BY account_id, guid",
        "title_ids": "SELECT * FROM title_ids ORDER BY account_id, id",
        # Sequence numbers are not rolled back: the order of the queue, not its numbers.
        "sync_queue": "SELECT account_id, server_id, kind, guid FROM sync_queue ORDER BY seq",
    }
    tx = conn.transaction()
    await tx.start()
    try:
        for op in ops:
            await conn.fetch(op.query, *op.args)
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in tables.items()}
    finally:
        await tx.rollback()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=_actions, batch=_actions)
async def test_linking_a_batchs_new_titles_first_gives_the_folds_rows(
    store: EventStore, pool: asyncpg.Pool[Any], before: list[Any], batch: list[Any]
) -> None:
    """WatchStateProjection.prepare links a batch's new titles before its folds: with it or
    without it, the batch gives the same states, links and queue — after any earlier events
    (titles known, states, pending changes) and whatever the batch's ids share."""
    account = f"acc{uuid.uuid4().hex[:8]}"
    projection = WatchStateProjection()

    def events(actions: list[Any], offset: int) -> list[NewEvent]:
        made = []
        for n, (ids, kind, minute) in enumerate(actions):
            guid, *more = sorted(ids)
            at = T0 + timedelta(minutes=minute, seconds=offset + n)
            event = (
                domain.Rated(guid=guid, ids=tuple(more), at=at, rating=minute % 10 + 1)
                if kind == "rated"
                else domain.UNRATED_ACTIONS[kind](guid=guid, ids=tuple(more), at=at)
            )
            made.append(domain.registry.new(event))
        return made

    await pool.execute("INSERT INTO sync_accounts VALUES ($1, true)", account)
    await pool.execute("INSERT INTO sync_access VALUES ($1, 's1')", account)
    stream = domain.watch_stream(account)
    await store.append(stream, events(before, 0))
    await store.append(stream, events(batch, 1000))
    recorded = await store.read_stream(stream)
    first, second = recorded[: len(before)], recorded[len(before) :]
    async with pool.acquire() as conn:
        ops = [*projection.prepare(first), *(op for e in first for op in projection.apply(e))]
        for op in ops:
            await conn.fetch(op.query, *op.args)
        folds = [op for e in second for op in projection.apply(e)]
        with_links = await _fold(conn, [*projection.prepare(second), *folds])
        without = await _fold(conn, folds)
    assert with_links == without


async def test_a_batchs_new_titles_are_linked_before_its_folds(
    store: EventStore, pool: asyncpg.Pool[Any]
) -> None:
    at = T0
    new = domain.registry.new
    batch = [
        new(domain.Watched(guid=MOVIE, ids=(IMDB, TMDB), at=at)),  # new: linked first
        new(domain.Watched(guid=TVDB, at=at)),  # one id: nothing to link
        new(domain.Watched(guid=MOVIE_2, ids=(IMDB_2,), at=at)),  # shares IMDB_2 with the next:
        new(domain.Rated(guid=TMDB_2, ids=(IMDB_2,), at=at, rating=3)),  # left to the folds
    ]
    await store.append(domain.watch_stream("ann"), batch)
    recorded = await store.read_stream(domain.watch_stream("ann"))
    [op] = WatchStateProjection().prepare(recorded)
    assert await pool.fetchval(op.query, *op.args) == 2
    rows = await pool.fetch("SELECT id, title FROM title_ids ORDER BY id")
    assert [tuple(r) for r in rows] == [(IMDB, MOVIE), (TMDB, MOVIE)]
    # Known now: linking them again is the folds' (nothing new here).
    assert await pool.fetchval(op.query, *op.args) == 0
