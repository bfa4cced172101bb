"""The HTTP API v1: handlers and their declarations (``ENDPOINTS``)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from eventstore import database as db
from eventstore import migrations
from projections import runner as projection_runner
from projections.domain import Account

from . import wire
from .accounts import AccountService
from .appkeys import (
    ACCOUNTS,
    DATABASE_HEALTH,
    METRICS,
    MIGRATION_PACKAGES,
    OPENAPI,
    POOL,
    PROJECTION_NAMES,
    SERVERS,
    STORE,
    STREAM_SLOTS,
)
from .endpoints import Context, Endpoint, json_response
from .errors import ApiError, invalid
from .servers import ServerRecord, ServerService

log = structlog.get_logger(__name__)


def _accounts(ctx: Context[Any, Any]) -> AccountService:
    return ctx.request.app[ACCOUNTS]


def _servers(ctx: Context[Any, Any]) -> ServerService:
    return ctx.request.app[SERVERS]


def _me(ctx: Context[Any, Any]) -> Account:
    assert ctx.account is not None
    return ctx.account


# -- operations -------------------------------------------------------------------------------


async def healthz(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(wire.Status("ok"))


async def readyz(ctx: Context[None, None]) -> web.StreamResponse:
    try:
        async with ctx.request.app[POOL].acquire(timeout=2) as conn:
            todo = await migrations.pending(conn, MIGRATION_PACKAGES)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("not_ready", reason="database_unreachable", error=str(exc))
        return json_response(
            {"status": "unavailable", "reason": "database_unreachable"}, status=503
        )
    if todo:
        return json_response(
            {
                "status": "unavailable",
                "reason": "migrations_pending",
                "pending": [m.label for m in todo],
            },
            status=503,
        )
    return json_response(wire.Status("ready"))


async def metrics(ctx: Context[None, None]) -> web.StreamResponse:
    app = ctx.request.app
    registry = app[METRICS]
    health = app[DATABASE_HEALTH]
    registry.long_polls.set(app[SERVERS].wakeups.waiting)
    # Lag and head are measured now if the database answers soon; if not, the gauges keep the
    # last values measured (a scrape must answer during an outage, or every series is lost).
    try:
        async with asyncio.timeout(2.0):
            status = await _projection_status(app[POOL])
    except TimeoutError:
        pass  # slow, or gone: a request that meets it says which
    except Exception as exc:
        if not db.unavailable(exc):
            raise
        health.failed(exc)
    else:
        for item in status:
            registry.lag.labels(item.name).set(item.lag)
            registry.head.set(item.head)
    registry.database_up.set(1 if health.up else 0)
    return web.Response(
        body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def openapi(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(ctx.request.app[OPENAPI])


# -- accounts ---------------------------------------------------------------------------------


async def create_account(ctx: Context[wire.CreateAccount, None]) -> web.StreamResponse:
    created = await _accounts(ctx).create(ctx.body)
    return json_response(created, status=201)


async def get_me(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(await _accounts(ctx).me(_me(ctx)))


async def patch_me(ctx: Context[wire.PatchMe, None]) -> web.StreamResponse:
    service = _accounts(ctx)
    before = _me(ctx)
    updated, cursor = await service.update_settings(before, ctx.body)
    if cursor is not None:
        # Read-your-writes; and servers' queues are filled (sync on) or emptied (sync off)
        # before we answer.
        await service.settle(cursor)
    return json_response(await service.me(updated))


async def post_actions(ctx: Context[wire.Actions, None]) -> web.StreamResponse:
    if len(ctx.body.actions) > wire.MAX_BATCH:
        raise ApiError(
            413,
            "batch_too_large",
            f"at most {wire.MAX_BATCH} actions a request, not {len(ctx.body.actions)}",
        )
    results = await _accounts(ctx).record_actions(_me(ctx), ctx.body.actions)
    ctx.request.app[METRICS].count_results("account", results)
    return json_response(wire.Results(results))


async def get_state(ctx: Context[None, wire.StateQuery]) -> web.StreamResponse:
    return json_response(await _accounts(ctx).state_page(_me(ctx).id, ctx.query))


async def get_state_one(ctx: Context[None, None]) -> web.StreamResponse:
    guid = ctx.request.match_info["guid"]
    state = await _accounts(ctx).state_one(_me(ctx).id, guid)
    if state is None:
        raise ApiError(404, "not_found", f"no watch state or rating for {guid}")
    return json_response(state)


async def get_history(ctx: Context[None, wire.HistoryQuery]) -> web.StreamResponse:
    return json_response(await _accounts(ctx).history_page(_me(ctx).id, ctx.query))


# -- operator ---------------------------------------------------------------------------------


async def admin_events(ctx: Context[None, wire.EventsQuery]) -> web.StreamResponse:
    query = ctx.query
    after = query.after
    if query.cursor is not None:
        try:
            after = int(query.cursor)
            if not 0 <= after <= wire.MAX_BIGINT:
                raise ValueError(query.cursor)
        except ValueError:
            raise ApiError(
                422,
                "invalid_request",
                "cursor: not a cursor this API issued",
                errors=[wire.FieldError("cursor", "not a cursor this API issued")],
            ) from None
    events = await ctx.request.app[STORE].read_all(after=after, limit=query.limit + 1)
    page = events[: query.limit]
    items = [wire.LogEvent(e.position, e.stream, e.type, e.data, e.recorded_at) for e in page]
    more = len(events) > query.limit
    return json_response(wire.LogEventPage(items, str(page[-1].position) if more else None))


async def _projection_status(pool: asyncpg.Pool[Any]) -> list[wire.ProjectionStatus]:
    async with pool.acquire() as conn:
        head: int = await conn.fetchval(projection_runner.QUERIES["log_head"])
        items = []
        for name in PROJECTION_NAMES:
            cursor = await projection_runner.checkpoint(conn, name)
            lag = await projection_runner.lag(conn, cursor)
            dead: int = await conn.fetchval(projection_runner.QUERIES["dead_letters_count"], name)
            items.append(wire.ProjectionStatus(name, cursor.position, head, lag, dead))
    return items


async def admin_projections(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(wire.ProjectionStatusList(await _projection_status(ctx.request.app[POOL])))


# -- servers ----------------------------------------------------------------------------------


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
    return json_response(await _servers(ctx).register(owner, body), status=201)


async def _own_server(ctx: Context[Any, Any]) -> ServerRecord:
    """The path's server, which the calling account must own."""
    assert ctx.principal is not None
    server = await _servers(ctx).require(ctx.request.match_info["sid"])
    if server.owner != ctx.principal.id:
        raise ApiError(403, "forbidden", "only the server's owner may do this")
    return server


async def get_server(ctx: Context[None, None]) -> web.StreamResponse:
    assert ctx.principal is not None
    sid = ctx.request.match_info["sid"]
    if ctx.principal.kind == "server":
        if ctx.principal.id != sid:
            raise ApiError(403, "forbidden", "a server token is for its own server only")
        server = await _servers(ctx).require(sid)
    else:
        server = await _own_server(ctx)
    return json_response(await _servers(ctx).info(server))


async def grant_access(ctx: Context[None, None]) -> web.StreamResponse:
    server = await _own_server(ctx)
    await _servers(ctx).set_access(server, ctx.request.match_info["account"], offered=True)
    return web.Response(status=204)


async def revoke_access(ctx: Context[None, None]) -> web.StreamResponse:
    server = await _own_server(ctx)
    await _servers(ctx).set_access(server, ctx.request.match_info["account"], offered=False)
    return web.Response(status=204)


async def my_servers(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(await _servers(ctx).servers_of(_me(ctx)))


async def accept_server(ctx: Context[None, None]) -> web.StreamResponse:
    await _servers(ctx).accept(_me(ctx), ctx.request.match_info["sid"])
    return web.Response(status=204)


async def leave_server(ctx: Context[None, None]) -> web.StreamResponse:
    await _servers(ctx).leave(_me(ctx), ctx.request.match_info["sid"])
    return web.Response(status=204)


def _this_server(ctx: Context[Any, Any]) -> str:
    assert ctx.principal is not None
    sid = ctx.request.match_info["sid"]
    if ctx.principal.id != sid:
        raise ApiError(403, "forbidden", "a server token is for its own server only")
    return sid


async def server_events(ctx: Context[wire.ServerEvents, None]) -> web.StreamResponse:
    sid = _this_server(ctx)
    if len(ctx.body.events) > wire.MAX_BATCH:
        raise ApiError(
            413,
            "batch_too_large",
            f"at most {wire.MAX_BATCH} events a request, not {len(ctx.body.events)}",
        )
    results = await _servers(ctx).ingest(sid, ctx.body.events)
    ctx.request.app[METRICS].count_results("server", results)
    return json_response(wire.Results(results))


async def server_changes(ctx: Context[None, wire.ChangesQuery]) -> web.StreamResponse:
    sid = _this_server(ctx)
    if ctx.query.wait <= 0:
        return json_response(await _servers(ctx).changes(sid, ctx.query))
    assert ctx.principal is not None
    with ctx.request.app[STREAM_SLOTS].hold(ctx.principal):
        return json_response(await _servers(ctx).changes(sid, ctx.query))


_SERVER_ERRORS = {404: "No such server (`not_found`)."}
_ACCOUNT_ERRORS = {404: "Not found (`not_found`)."}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/healthz",
        healthz,
        "Liveness: 200 while the process runs.",
        "healthz",
        "operations",
        responses={200: (wire.Status, "The process runs.")},
    ),
    Endpoint(
        "GET",
        "/readyz",
        readyz,
        "Readiness: the database answers and is migrated.",
        "readyz",
        "operations",
        responses={200: (wire.Status, "Ready."), 503: (None, "Not ready, and why.")},
    ),
    Endpoint(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics (text format).",
        "metrics",
        "operations",
        responses={200: (None, "Prometheus text exposition format.")},
        raw_response=CONTENT_TYPE_LATEST,
    ),
    Endpoint(
        "GET",
        "/v1/openapi.json",
        openapi,
        "This document.",
        "openapi",
        "operations",
        responses={200: (None, "The OpenAPI 3.1 document.")},
        raw_response="application/json",
    ),
    Endpoint(
        "POST",
        "/v1/accounts",
        create_account,
        "Create an account; its token is shown only here.",
        "createAccount",
        "accounts",
        auth=("operator",),
        body=wire.CreateAccount,
        responses={201: (wire.CreatedAccount, "Created.")},
        errors={409: "The id is taken (`account_exists`)."},
    ),
    Endpoint(
        "GET",
        "/v1/me",
        get_me,
        "The calling account, its settings and profile counts.",
        "getMe",
        "me",
        auth=("account",),
        responses={200: (wire.Me, "The account.")},
    ),
    Endpoint(
        "PATCH",
        "/v1/me",
        patch_me,
        "Turn sync on or off; set profile visibility.",
        "patchMe",
        "me",
        auth=("account",),
        body=wire.PatchMe,
        responses={200: (wire.Me, "The account, changed.")},
        errors={403: "A managed account cannot turn sync on (`managed_account`), or `forbidden`."},
    ),
    Endpoint(
        "POST",
        "/v1/me/actions",
        post_actions,
        "Record watched / unwatched / rated / unrated actions; a result per action, in order.",
        "postActions",
        "me",
        auth=("account",),
        body=wire.Actions,
        responses={200: (wire.Results, "One result per action.")},
    ),
    Endpoint(
        "GET",
        "/v1/me/state",
        get_state,
        "Current watch state and ratings, by GUID.",
        "getState",
        "me",
        auth=("account",),
        query=wire.StateQuery,
        responses={200: (wire.StatePage, "A page.")},
    ),
    Endpoint(
        "GET",
        "/v1/me/state/{guid:.+}",
        get_state_one,
        "One title's state (GUID URL-encoded).",
        "getStateOne",
        "me",
        auth=("account",),
        responses={200: (wire.State, "The state.")},
        errors=_ACCOUNT_ERRORS,
    ),
    Endpoint(
        "GET",
        "/v1/me/history",
        get_history,
        "Watch history, newest first.",
        "getHistory",
        "me",
        auth=("account",),
        query=wire.HistoryQuery,
        responses={200: (wire.HistoryPage, "A page.")},
    ),
    Endpoint(
        "GET",
        "/v1/me/servers",
        my_servers,
        "Servers with access to me (owned, or shared and accepted), and offers waiting.",
        "getMyServers",
        "me",
        auth=("account",),
        responses={200: (wire.ServerList, "The servers, and the offers.")},
    ),
    Endpoint(
        "PUT",
        "/v1/me/servers/{sid}",
        accept_server,
        "Accept the owner's offer of a server: from now on it may read and write my watch "
        "state (while sync is on). Already accepted, or my own: nothing changes.",
        "acceptServer",
        "me",
        auth=("account",),
        responses={204: (None, "Accepted.")},
        errors={404: "No such server, or no offer of it (`not_found`)."},
    ),
    Endpoint(
        "DELETE",
        "/v1/me/servers/{sid}",
        leave_server,
        "Decline the offer of a server, or leave a shared one: its pending changes for me are "
        "dropped and its events for me are refused (`no_access`) from now on.",
        "leaveServer",
        "me",
        auth=("account",),
        responses={204: (None, "Declined or left (or neither was needed).")},
        errors={
            404: "No such server (`not_found`).",
            422: "My own server (`invalid_request`).",
        },
    ),
    Endpoint(
        "POST",
        "/v1/servers",
        create_server,
        "Register a media server (owner: the calling account, or `owner` for the operator).",
        "createServer",
        "servers",
        auth=("account", "operator"),
        body=wire.CreateServer,
        responses={201: (wire.CreatedServer, "Registered; its token is shown only here.")},
        errors={
            409: "The id is taken (`server_exists`).",
            422: "Invalid body (`invalid_request`), or older than 1.27.2 (`server_too_old`).",
        },
    ),
    Endpoint(
        "GET",
        "/v1/servers/{sid}",
        get_server,
        "A server and the accounts with access to it (its owner, or the server).",
        "getServer",
        "servers",
        auth=("account", "server"),
        responses={200: (wire.ServerInfo, "The server.")},
        errors=_SERVER_ERRORS,
    ),
    Endpoint(
        "PUT",
        "/v1/servers/{sid}/access/{account}",
        grant_access,
        "Offer the server to an account (owner only): it has access once the account accepts "
        "(`PUT /v1/me/servers/{sid}`).",
        "grantAccess",
        "servers",
        auth=("account",),
        responses={204: (None, "Offered (or already offered or accepted).")},
        errors={404: "No such server or account (`not_found`)."},
    ),
    Endpoint(
        "DELETE",
        "/v1/servers/{sid}/access/{account}",
        revoke_access,
        "Withdraw the offer of the server to an account, or revoke its access (owner only; not "
        "the owner's own).",
        "revokeAccess",
        "servers",
        auth=("account",),
        responses={204: (None, "Not offered, not shared.")},
        errors={
            404: "No such server or account (`not_found`).",
            422: "The owner's own access (`invalid_request`).",
        },
    ),
    Endpoint(
        "POST",
        "/v1/servers/{sid}/events",
        server_events,
        "Watch actions seen on this server; a result per event, in order.",
        "postServerEvents",
        "servers",
        auth=("server",),
        body=wire.ServerEvents,
        responses={200: (wire.Results, "One result per event.")},
    ),
    Endpoint(
        "GET",
        "/v1/servers/{sid}/changes",
        server_changes,
        "This server's pending changes; `cursor` acknowledges earlier ones; `wait` holds "
        "(a token may hold a few long-polls at once: `WATCHLEDGER_MAX_STREAMS_PER_TOKEN`).",
        "getServerChanges",
        "servers",
        auth=("server",),
        query=wire.ChangesQuery,
        responses={200: (wire.Changes, "Pending changes (maybe none), the next cursor.")},
        errors={429: "This token holds too many long-polls already (`rate_limited`)."},
    ),
    Endpoint(
        "GET",
        "/v1/admin/events",
        admin_events,
        "The event log in log order.",
        "adminEvents",
        "operator",
        auth=("operator",),
        query=wire.EventsQuery,
        responses={200: (wire.LogEventPage, "A page.")},
    ),
    Endpoint(
        "GET",
        "/v1/admin/projections",
        admin_projections,
        "Every projection's position and lag.",
        "adminProjections",
        "operator",
        auth=("operator",),
        responses={200: (wire.ProjectionStatusList, "The projections.")},
    ),
]
