"""Accounts: creating one (the operator), the calling account itself, its actions."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from aiohttp import web

from projections.domain import Account, ReportedAction
from services.http import wire
from services.http.appkeys import ACCOUNTS, METRICS, READS
from services.http.endpoints import Context, Declarations, json_response
from services.http.errors import ApiError

route = Declarations()

T = TypeVar("T")


@route(
    "POST",
    "/v1/accounts",
    summary="Create an account; its token is shown only here.",
    operation_id="createAccount",
    tag="accounts",
    auth=("operator",),
    body=wire.CreateAccount,
    responses={201: (wire.CreatedAccount, "Created.")},
    errors={409: "The id is taken (`account_exists`)."},
)
async def create_account(ctx: Context[wire.CreateAccount, None]) -> web.StreamResponse:
    body = ctx.body
    account, token = await ctx.request.app[ACCOUNTS].create(body.id, body.kind, body.name)
    created = wire.CreatedAccount(id=account.id, kind=account.kind, name=account.name, token=token)
    return json_response(created, status=201)


@route(
    "POST",
    "/v1/accounts/{id}/token",
    summary="A new token for an account (the operator, e.g. for a person who lost theirs); "
    "the old one stops working at once.",
    operation_id="replaceAccountToken",
    tag="accounts",
    auth=("operator",),
    responses={200: (wire.NewToken, "The new token; shown only here.")},
    errors={404: "No such account (`not_found`)."},
)
async def replace_account_token(ctx: Context[None, None]) -> web.StreamResponse:
    accounts = ctx.request.app[ACCOUNTS]
    account_id = ctx.request.match_info["id"]
    account = await accounts.load(account_id)
    if account is None:
        raise ApiError(404, "not_found", f"no account {account_id!r}")
    return json_response(wire.NewToken(await accounts.replace_token(account)))


@route(
    "POST",
    "/v1/me/token",
    summary="Replace my token: the new one is answered, and the one this request was made "
    "with stops working at once.",
    operation_id="replaceMyToken",
    tag="me",
    auth=("account",),
    responses={200: (wire.NewToken, "The new token; shown only here.")},
)
async def replace_my_token(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(wire.NewToken(await ctx.request.app[ACCOUNTS].replace_token(ctx.me)))


@route(
    "GET",
    "/v1/me",
    summary="The calling account, its settings and profile counts.",
    operation_id="getMe",
    tag="me",
    auth=("account",),
    responses={200: (wire.Me, "The account.")},
)
async def get_me(ctx: Context[None, None]) -> web.StreamResponse:
    return json_response(await _me(ctx, ctx.me))


@route(
    "PATCH",
    "/v1/me",
    summary="Turn sync on or off; set profile visibility.",
    operation_id="patchMe",
    tag="me",
    auth=("account",),
    body=wire.PatchMe,
    responses={200: (wire.Me, "The account, changed.")},
    errors={403: "A managed account cannot turn sync on (`managed_account`), or `forbidden`."},
)
async def patch_me(ctx: Context[wire.PatchMe, None]) -> web.StreamResponse:
    updated = await ctx.request.app[ACCOUNTS].change_settings(
        ctx.me,
        sync_enabled=_given(ctx.body.sync_enabled),
        visibility=_given(ctx.body.visibility),
    )
    return json_response(await _me(ctx, updated))


@route(
    "POST",
    "/v1/me/actions",
    summary="Record watched / unwatched / rated / unrated actions; a result per action, in order.",
    operation_id="postActions",
    tag="me",
    auth=("account",),
    body=wire.Actions,
    responses={200: (wire.Results, "One result per action.")},
)
async def post_actions(ctx: Context[wire.Actions, None]) -> web.StreamResponse:
    if len(ctx.body.actions) > wire.MAX_BATCH:
        raise ApiError(
            413,
            "batch_too_large",
            f"at most {wire.MAX_BATCH} actions a request, not {len(ctx.body.actions)}",
        )
    actions = [
        ReportedAction(
            type=a.type, guid=a.guid, ids=tuple(a.ids), at=a.at, rating=a.rating, client_id=a.id
        )
        for a in ctx.body.actions
    ]
    outcomes = await ctx.request.app[ACCOUNTS].record_actions(ctx.me, actions)
    results = [wire.result(outcome) for outcome in outcomes]
    ctx.request.app[METRICS].count_results("account", results)
    return json_response(wire.Results(results))


async def _me(ctx: Context[Any, Any], account: Account) -> wire.Me:
    counts = await ctx.request.app[READS].counts(account.id)
    return wire.Me(
        id=account.id,
        kind=account.kind,
        name=account.name,
        sync_enabled=account.sync_enabled,
        visibility=account.visibility,
        counts=wire.Counts(movies=counts.movies, episodes=counts.episodes),
    )


def _given(value: T | msgspec.UnsetType) -> T | None:
    """A PATCH field's value; None when it was not given."""
    return None if isinstance(value, msgspec.UnsetType) else value
