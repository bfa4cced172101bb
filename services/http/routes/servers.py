"""Media servers: the calling account's servers and offers; registration, access, a
server's events and its queue of changes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from projections.domain import ReportedAction
from services.commands.servers import (
    BaselineRequest,
    Change,
    ServerRecord,
    ServerReport,
    ServerService,
    ServerSummary,
)
from services.http import wire
from services.http.appkeys import METRICS, SERVERS, STREAM_SLOTS
from services.http.cursors import decode_cursor, encode_cursor
from services.http.endpoints import Context, Declarations, json_response
from services.http.errors import ApiError, invalid
from services.http.limits import ClientGone, unless_gone

route = Declarations()

_SERVER_ERRORS = {404: "No such server (`not_found`)."}


def _servers(ctx: Context[Any, Any]) -> ServerService:
    return ctx.request.app[SERVERS]


# -- the calling account's servers ------------------------------------------------------------


@route(
    "GET",
    "/v1/me/servers",
    summary="Servers with access to me (owned, or shared and accepted), and offers waiting.",
    operation_id="getMyServers",
    tag="me",
    auth=("account",),
    responses={200: (wire.ServerList, "The servers, and the offers.")},
)
async def my_servers(ctx: Context[None, None]) -> web.StreamResponse:
    items, offers = await _servers(ctx).servers_of(ctx.me)
    return json_response(wire.ServerList(_summaries(items), _summaries(offers)))


@route(
    "PUT",
    "/v1/me/servers/{sid}",
    summary="Accept the owner's offer of a server: from now on it may read and write my watch "
    "state (while sync is on). Already accepted, or my own: nothing changes.",
    operation_id="acceptServer",
    tag="me",
    auth=("account",),
    responses={204: (None, "Accepted.")},
    errors={404: "No such server, or no offer of it (`not_found`)."},
)
async def accept_server(ctx: Context[None, None]) -> web.StreamResponse:
    await _servers(ctx).accept(ctx.me, ctx.request.match_info["sid"])
    return web.Response(status=204)


@route(
    "DELETE",
    "/v1/me/servers/{sid}",
    summary="Decline the offer of a server, or leave a shared one: its pending changes for me "
    "are dropped and its events for me are refused (`no_access`) from now on.",
    operation_id="leaveServer",
    tag="me",
    auth=("account",),
    responses={204: (None, "Declined or left (or neither was needed).")},
    errors={
        404: "No such server (`not_found`).",
        422: "My own server (`invalid_request`).",
    },
)
async def leave_server(ctx: Context[None, None]) -> web.StreamResponse:
    await _servers(ctx).leave(ctx.me, ctx.request.match_info["sid"])
    return web.Response(status=204)


# -- registration and access ------------------------------------------------------------------


@route(
    "POST",
    "/v1/servers",
    summary="Register a media server (owner: the calling account, or `owner` for the operator).",
    operation_id="createServer",
    tag="servers",
    auth=("account", "operator"),
    body=wire.CreateServer,
    responses={201: (wire.CreatedServer, "Registered; its token is shown only here.")},
    errors={
        409: "The id is taken (`server_exists`).",
        422: "Invalid body (`invalid_request`), or older than 1.27.2 (`server_too_old`).",
    },
)
async def create_server(ctx: Context[wire.CreateServer, None]) -> web.StreamResponse:
    assert ctx.principal is not None
    body = ctx.body
    if ctx.principal.kind == "operator":
        if body.owner is None:
            raise invalid("$.owner", "the operator must name the owning account")
        owner = body.owner
    else:
        if body.owner is not None and body.owner != ctx.principal.id:
            raise ApiError(403, "forbidden", "an account registers servers for itself only")
        owner = ctx.principal.id
    server, token = await _servers(ctx).register(owner, body.id, body.name, body.version)
    created = wire.CreatedServer(server.id, server.owner, server.name, server.version, token)
    return json_response(created, status=201)


@route(
    "GET",
    "/v1/servers/{sid}",
    summary="A server and the accounts with access to it (its owner, or the server).",
    operation_id="getServer",
    tag="servers",
    auth=("account", "server"),
    responses={200: (wire.ServerInfo, "The server.")},
    errors=_SERVER_ERRORS,
)
async def get_server(ctx: Context[None, None]) -> web.StreamResponse:
    assert ctx.principal is not None
    sid = ctx.request.match_info["sid"]
    if ctx.principal.kind == "server":
        if ctx.principal.id != sid:
            raise ApiError(403, "forbidden", "a server token is for its own server only")
        server = await _servers(ctx).require(sid)
    else:
        server = await _own_server(ctx)
    accounts = await _servers(ctx).accounts_of(server)
    return json_response(
        wire.ServerInfo(server.id, server.owner, server.name, server.version, accounts)
    )


@route(
    "PUT",
    "/v1/servers/{sid}/access/{account}",
    summary="Offer the server to an account (owner only): it has access once the account "
    "accepts (`PUT /v1/me/servers/{sid}`).",
    operation_id="grantAccess",
    tag="servers",
    auth=("account",),
    responses={204: (None, "Offered (or already offered or accepted).")},
    errors={404: "No such server or account (`not_found`)."},
)
async def grant_access(ctx: Context[None, None]) -> web.StreamResponse:
    server = await _own_server(ctx)
    await _servers(ctx).set_access(server, ctx.request.match_info["account"], offered=True)
    return web.Response(status=204)


@route(
    "DELETE",
    "/v1/servers/{sid}/access/{account}",
    summary="Withdraw the offer of the server to an account, or revoke its access (owner "
    "only; not the owner's own).",
    operation_id="revokeAccess",
    tag="servers",
    auth=("account",),
    responses={204: (None, "Not offered, not shared.")},
    errors={
        404: "No such server or account (`not_found`).",
        422: "The owner's own access (`invalid_request`).",
    },
)
async def revoke_access(ctx: Context[None, None]) -> web.StreamResponse:
    server = await _own_server(ctx)
    await _servers(ctx).set_access(server, ctx.request.match_info["account"], offered=False)
    return web.Response(status=204)


@route(
    "POST",
    "/v1/servers/{sid}/token",
    summary="A new token for the server (owner only; e.g. after its configuration leaked): "
    "the old one stops working at once.",
    operation_id="replaceServerToken",
    tag="servers",
    auth=("account",),
    responses={200: (wire.NewToken, "The new token; shown only here.")},
    errors=_SERVER_ERRORS,
)
async def replace_server_token(ctx: Context[None, None]) -> web.StreamResponse:
    server = await _own_server(ctx)
    return json_response(wire.NewToken(await _servers(ctx).replace_token(server)))


async def _own_server(ctx: Context[Any, Any]) -> ServerRecord:
    """The path's server, which the calling account must own."""
    assert ctx.principal is not None
    server = await _servers(ctx).require(ctx.request.match_info["sid"])
    if server.owner != ctx.principal.id:
        raise ApiError(403, "forbidden", "only the server's owner may do this")
    return server


# -- the server itself ------------------------------------------------------------------------


@route(
    "POST",
    "/v1/servers/{sid}/events",
    summary="Watch actions seen on this server; a result per event, in order.",
    operation_id="postServerEvents",
    tag="servers",
    auth=("server",),
    body=wire.ServerEvents,
    responses={200: (wire.Results, "One result per event.")},
)
async def server_events(ctx: Context[wire.ServerEvents, None]) -> web.StreamResponse:
    sid = _this_server(ctx)
    if len(ctx.body.events) > wire.MAX_BATCH:
        raise ApiError(
            413,
            "batch_too_large",
            f"at most {wire.MAX_BATCH} events a request, not {len(ctx.body.events)}",
        )
    reports = [
        ServerReport(
            e.account,
            ReportedAction(
                type=e.type,
                guid=e.guid,
                ids=tuple(e.ids),
                at=e.at,
                rating=e.rating,
                edition=e.edition,
                baseline=e.baseline,
            ),
        )
        for e in ctx.body.events
    ]
    results = [wire.result(outcome) for outcome in await _servers(ctx).ingest(sid, reports)]
    ctx.request.app[METRICS].count_results("server", results)
    return json_response(wire.Results(results))


@route(
    "GET",
    "/v1/servers/{sid}/changes",
    summary="This server's pending changes; `cursor` acknowledges earlier ones; `wait` holds "
    "(a token may hold a few long-polls at once: `WATCHLEDGER_MAX_STREAMS_PER_TOKEN`).",
    operation_id="getServerChanges",
    tag="servers",
    auth=("server",),
    query=wire.ChangesQuery,
    responses={200: (wire.Changes, "Pending changes (maybe none), the next cursor.")},
    errors={429: "This token holds too many long-polls already (`rate_limited`)."},
)
async def server_changes(ctx: Context[None, wire.ChangesQuery]) -> web.StreamResponse:
    sid = _this_server(ctx)
    if ctx.query.wait <= 0:
        return json_response(await _changes(ctx, sid))
    assert ctx.principal is not None
    with ctx.request.app[STREAM_SLOTS].hold(ctx.principal, ctx.request) as client_gone:
        try:
            return json_response(await unless_gone(_changes(ctx, sid), client_gone))
        except ClientGone:
            # Nobody reads this answer; the status tells the access log and metrics why.
            return web.Response(status=499, reason="Client Closed Request")


async def _changes(ctx: Context[None, wire.ChangesQuery], sid: str) -> wire.Changes:
    query = ctx.query
    after = decode_cursor(query.cursor, int) if query.cursor is not None else None
    changes, cursor = await _servers(ctx).changes(
        sid, after=after, limit=query.limit, wait=query.wait
    )
    return wire.Changes([_change(change) for change in changes], encode_cursor(cursor))


def _this_server(ctx: Context[Any, Any]) -> str:
    assert ctx.principal is not None
    sid = ctx.request.match_info["sid"]
    if ctx.principal.id != sid:
        raise ApiError(403, "forbidden", "a server token is for its own server only")
    return sid


def _summaries(servers: list[ServerSummary]) -> list[wire.ServerSummary]:
    return [wire.ServerSummary(s.id, s.name, s.owner, s.version) for s in servers]


def _change(change: Change) -> wire.Change:
    if isinstance(change, BaselineRequest):
        return wire.BaselineRequest(change.account)
    return wire.StateChange(
        account=change.account,
        guid=change.guid,
        ids=change.ids,
        watched=change.watched,
        watched_at=change.watched_at,
        rating=change.rating,
        rated_at=change.rated_at,
    )
