"""The operator's view: the event log, and where every projection stands."""

from __future__ import annotations

from aiohttp import web

from services.http import wire
from services.http.appkeys import READS
from services.http.endpoints import Context, Declarations, json_response
from services.http.errors import ApiError

route = Declarations()


@route(
    "GET",
    "/v1/admin/events",
    summary="The event log in log order.",
    operation_id="adminEvents",
    tag="operator",
    auth=("operator",),
    query=wire.EventsQuery,
    responses={200: (wire.LogEventPage, "A page.")},
)
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
    page = await ctx.request.app[READS].log_page(after, query.limit)
    items = [wire.LogEvent(e.position, e.stream, e.type, e.data, e.recorded_at) for e in page.items]
    cursor = str(page.items[-1].position) if page.more else None
    return json_response(wire.LogEventPage(items, cursor))


@route(
    "GET",
    "/v1/admin/projections",
    summary="Every projection's position and lag.",
    operation_id="adminProjections",
    tag="operator",
    auth=("operator",),
    responses={200: (wire.ProjectionStatusList, "The projections.")},
)
async def admin_projections(ctx: Context[None, None]) -> web.StreamResponse:
    items = [
        wire.ProjectionStatus(p.name, p.position, p.head, p.lag, p.dead_letters)
        for p in await ctx.request.app[READS].projections()
    ]
    return json_response(wire.ProjectionStatusList(items))
