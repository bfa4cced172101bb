"""The calling account's watch state and history."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from projections.domain import lookup_id
from services.commands.reads import TitleState
from services.http import wire
from services.http.appkeys import DELETIONS, READS
from services.http.cursors import decode_cursor, encode_cursor
from services.http.endpoints import Context, Declarations, json_response
from services.http.errors import ApiError

route = Declarations()

_ACCOUNT_ERRORS = {404: "Not found (`not_found`)."}


@route(
    "GET",
    "/v1/me/state",
    summary="Current watch state and ratings, by GUID.",
    operation_id="getState",
    tag="me",
    auth=("account",),
    query=wire.StateQuery,
    responses={200: (wire.StatePage, "A page.")},
)
async def get_state(ctx: Context[None, wire.StateQuery]) -> web.StreamResponse:
    query = ctx.query
    after = decode_cursor(query.cursor, str) if query.cursor else ""
    page = await ctx.request.app[READS].state_page(
        ctx.me.id,
        after=after,
        watched=query.watched,
        kind=query.kind,
        updated_after=query.updated_after,
        limit=query.limit,
    )
    items = [_state(state) for state in page.items]
    return json_response(
        wire.StatePage(items, encode_cursor(items[-1].guid) if page.more else None)
    )


@route(
    "GET",
    "/v1/me/state/{guid:.+}",
    summary="One title's state (GUID URL-encoded).",
    operation_id="getStateOne",
    tag="me",
    auth=("account",),
    responses={200: (wire.State, "The state.")},
    errors=_ACCOUNT_ERRORS,
)
async def get_state_one(ctx: Context[None, None]) -> web.StreamResponse:
    guid = ctx.request.match_info["guid"]
    state = await ctx.request.app[READS].state_one(ctx.me.id, lookup_id(guid))
    if state is None:
        raise ApiError(404, "not_found", f"no watch state or rating for {guid}")
    return json_response(_state(state))


@route(
    "GET",
    "/v1/me/history",
    summary="Watch history, newest first.",
    operation_id="getHistory",
    tag="me",
    auth=("account",),
    query=wire.HistoryQuery,
    responses={200: (wire.HistoryPage, "A page.")},
)
async def get_history(ctx: Context[None, wire.HistoryQuery]) -> web.StreamResponse:
    query = ctx.query
    before = decode_cursor(query.cursor, tuple[datetime, int]) if query.cursor else None
    page = await ctx.request.app[READS].history_page(
        ctx.me.id,
        guid=None if query.guid is None else lookup_id(query.guid),
        before=before,
        limit=query.limit,
    )
    items = [wire.HistoryItem(r.event_id, r.guid, r.type, r.at) for r in page.items]
    last = page.items[-1] if page.more else None
    cursor = None if last is None else encode_cursor((last.at, last.position))
    return json_response(wire.HistoryPage(items, cursor))


def _state(state: TitleState) -> wire.State:
    return wire.State(
        guid=state.guid,
        ids=state.ids,
        watched=state.watched,
        watched_at=state.watched_at,
        rating=state.rating,
        rated_at=state.rated_at,
        updated_at=state.updated_at,
    )


_CONFIRM = "Add `confirm=true`: the deletion cannot be undone."


def _confirmed(query: wire.DeleteQuery) -> None:
    if query.confirm != "true":
        raise ApiError(400, "confirmation_required", _CONFIRM)


@route(
    "DELETE",
    "/v1/me/history",
    summary=(
        "Delete the whole watch history: every watched and unwatched record is removed from "
        "the log; the state stays; nothing is sent to servers."
    ),
    operation_id="deleteHistory",
    tag="me",
    auth=("account",),
    query=wire.DeleteQuery,
    responses={200: (wire.Deleted, "How many history records were removed.")},
    errors={400: "No `confirm=true` (`confirmation_required`)."},
)
async def delete_history(ctx: Context[None, wire.DeleteQuery]) -> web.StreamResponse:
    _confirmed(ctx.query)
    deleted = await ctx.request.app[DELETIONS].delete_history(ctx.me)
    return json_response(wire.Deleted(deleted))


@route(
    "DELETE",
    "/v1/me/state",
    summary=(
        "Delete the watch state and every rating (only while sync is off): rating events are "
        "removed from the log; the history stays; nothing is sent to servers."
    ),
    operation_id="deleteState",
    tag="me",
    auth=("account",),
    query=wire.DeleteQuery,
    responses={200: (wire.Deleted, "How many titles had a state that was removed.")},
    errors={
        400: "No `confirm=true` (`confirmation_required`).",
        409: "Sync is on (`sync_enabled`).",
    },
)
async def delete_state(ctx: Context[None, wire.DeleteQuery]) -> web.StreamResponse:
    _confirmed(ctx.query)
    deleted = await ctx.request.app[DELETIONS].delete_state(ctx.me)
    return json_response(wire.Deleted(deleted))
