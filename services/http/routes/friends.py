"""Friends and activity: friendships, the caller's feed (paged and streamed), and an
account's activity as the caller may see it (product rule 9)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import msgspec
import structlog
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from eventstore import LogCursor
from eventstore.database import unavailable
from projections.activity import ActivityItem
from services.commands.reads import Page
from services.http import wire
from services.http.appkeys import DATABASE_HEALTH, FRIENDS, SETTINGS, STREAM_SLOTS
from services.http.cursors import decode_cursor, encode_cursor
from services.http.endpoints import Context, Declarations, json_response
from services.http.httpserver import where_raised
from services.http.limits import ClientGone

log = structlog.get_logger(__name__)

route = Declarations()

_encoder = msgspec.json.Encoder()


@route(
    "PUT",
    "/v1/me/friends/{account}",
    summary=(
        "Ask an account to be friends, or accept its request: both sides having asked makes a "
        "friendship (idempotent)."
    ),
    operation_id="putFriend",
    tag="friends",
    auth=("account",),
    responses={204: (None, "Asked (or friends now).")},
    errors={
        404: "No such account (`not_found`).",
        422: "The caller itself (`invalid_request`).",
    },
)
async def put_friend(ctx: Context[None, None]) -> web.StreamResponse:
    await ctx.request.app[FRIENDS].request(ctx.me, ctx.request.match_info["account"])
    return web.Response(status=204)


@route(
    "DELETE",
    "/v1/me/friends/{account}",
    summary=(
        "End a friendship, withdraw my request or decline theirs (idempotent: nothing to end "
        "is no change)."
    ),
    operation_id="deleteFriend",
    tag="friends",
    auth=("account",),
    responses={204: (None, "Neither side has asked any more.")},
    errors={422: "The caller itself (`invalid_request`)."},
)
async def delete_friend(ctx: Context[None, None]) -> web.StreamResponse:
    await ctx.request.app[FRIENDS].remove(ctx.me, ctx.request.match_info["account"])
    return web.Response(status=204)


@route(
    "GET",
    "/v1/me/friends",
    summary="My friends, the requests waiting for my answer, and mine waiting for theirs.",
    operation_id="getFriends",
    tag="friends",
    auth=("account",),
    responses={200: (wire.FriendList, "Each list sorted by account id.")},
)
async def get_friends(ctx: Context[None, None]) -> web.StreamResponse:
    lists = await ctx.request.app[FRIENDS].lists(ctx.me.id)
    return json_response(wire.FriendList(lists.friends, lists.incoming, lists.outgoing))


@route(
    "GET",
    "/v1/me/feed",
    summary=(
        "My friends' activity (of those whose visibility is `friends` or `public`), newest "
        "`at` first. Not my own. Pages stay stable while new activity arrives."
    ),
    operation_id="getFeed",
    tag="friends",
    auth=("account",),
    query=wire.ActivityQuery,
    responses={200: (wire.ActivityPage, "A page.")},
)
async def get_feed(ctx: Context[None, wire.ActivityQuery]) -> web.StreamResponse:
    page = await ctx.request.app[FRIENDS].feed_page(
        ctx.me.id, before=_before(ctx.query), limit=ctx.query.limit
    )
    return json_response(_page(page))


@route(
    "GET",
    "/v1/accounts/{id}/activity",
    summary=(
        "An account's activity as I may see it, newest `at` first: my own, all of it; a "
        "friend's, unless `private`; anyone's, if `public`."
    ),
    operation_id="getActivity",
    tag="friends",
    auth=("account",),
    query=wire.ActivityQuery,
    responses={200: (wire.ActivityPage, "A page.")},
    errors={404: "Not visible to me, or no such account (`not_found`)."},
)
async def get_activity(ctx: Context[None, wire.ActivityQuery]) -> web.StreamResponse:
    page = await ctx.request.app[FRIENDS].activity_page(
        ctx.me.id, ctx.request.match_info["id"], before=_before(ctx.query), limit=ctx.query.limit
    )
    return json_response(_page(page))


@route(
    "GET",
    "/v1/me/feed/stream",
    summary=(
        "My feed as Server-Sent Events: each new visible activity is one event, its `data:` "
        "the Activity JSON and its `id:` a cursor; reconnecting with `Last-Event-ID` resumes "
        "after it, with no gap and no repeat (without it: from now). Comment lines keep the "
        "connection alive (`WATCHLEDGER_STREAM_HEARTBEAT`, default 15 s). Friendships and "
        "visibility as they are when each event is sent. The stream ends when the service "
        "stops or loses its database: reconnect with `Last-Event-ID`. Counts against the "
        "token's long-poll and stream slots."
    ),
    operation_id="streamFeed",
    tag="friends",
    auth=("account",),
    raw_response="text/event-stream",
    headers={
        "Last-Event-ID": (
            "The `id:` of the last event received: the stream resumes after it (absent: from now)."
        )
    },
    responses={
        200: (
            None,
            "An endless `text/event-stream`: one event per new visible activity (`id:` a "
            "cursor, `data:` the Activity JSON), and comment lines as heartbeats.",
        )
    },
    errors={
        422: "`Last-Event-ID` is not a cursor this API issued (`invalid_request`).",
        429: "The token holds its most streams and long-polls already (`rate_limited`).",
    },
)
async def stream_feed(ctx: Context[None, None]) -> web.StreamResponse:
    request = ctx.request
    last = request.headers.get("Last-Event-ID")
    after = None if not last else LogCursor(*decode_cursor(last, tuple[int, int]))
    assert ctx.principal is not None
    friends = request.app[FRIENDS]
    with request.app[STREAM_SLOTS].hold(ctx.principal, request) as client_gone:
        if after is None:
            # "From now" is fixed before the answer starts: what the client does once it has
            # the answer's head (an action, a friend's) is after it, so it is streamed.
            after = await friends.now()
        response = EventSourceResponse(ping_interval=request.app[SETTINGS].stream_heartbeat)
        await response.prepare(request)
        pump = asyncio.create_task(_pump(response, friends.stream(ctx.me.id, after)))
        heartbeats = asyncio.create_task(response.wait())
        try:
            # Until the client goes (its connection closes, or a heartbeat fails to send), the
            # service stops, or the pump fails (the database went away): the stream then ends,
            # and the client reconnects with its cursor.
            await asyncio.wait({pump, heartbeats, client_gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            heartbeats.cancel()
            pump.cancel()
            await asyncio.wait({pump, heartbeats})
            _ended(request, pump)
        return response


def _ended(request: web.Request, pump: asyncio.Task[None]) -> None:
    """Say why a stream ended, if not because its client went or the service stops. Its
    answer has started, so an error can only end it (never become a problem answer)."""
    if pump.cancelled() or (error := pump.exception()) is None:
        return
    if isinstance(error, ClientGone):
        return  # the client went away, or stopped reading
    if unavailable(error):
        request.app[DATABASE_HEALTH].failed(error)
        log.info("feed_stream_interrupted", reason=type(error).__name__)
    elif isinstance(error, TimeoutError):  # no connection free, or a statement, in time
        log.warning("feed_stream_interrupted", reason=type(error).__name__)
    else:
        # Where it was raised, never its text (which may quote values): as for any request.
        log.error("feed_stream_failed", reason=type(error).__name__, where=where_raised(error))


async def _pump(response: EventSourceResponse, batches: AsyncIterator[list[ActivityItem]]) -> None:
    async for items in batches:
        for item in items:
            try:
                await response.send(
                    _encoder.encode(_activity(item)).decode(),
                    id=encode_cursor((item.cursor.transaction_id, item.cursor.position)),
                )
            except (ConnectionResetError, TimeoutError) as error:  # gone, or stopped reading
                raise ClientGone from error


def _before(query: wire.ActivityQuery) -> tuple[datetime, int] | None:
    return decode_cursor(query.cursor, tuple[datetime, int]) if query.cursor else None


def _page(page: Page[ActivityItem]) -> wire.ActivityPage:
    items = [_activity(item) for item in page.items]
    last = page.items[-1] if page.more else None
    return wire.ActivityPage(
        items, None if last is None else encode_cursor((last.at, last.position))
    )


def _activity(item: ActivityItem) -> wire.Activity:
    return wire.Activity(
        id=item.event_id,
        actor=item.actor,
        type=item.type,
        guid=item.guid,
        rating=item.rating,
        at=item.at,
    )
