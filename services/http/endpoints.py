"""Declaring endpoints once: the route, who may call it, what it takes and gives.

The same declaration registers the aiohttp route, does authentication, content-type and
body/query decoding before the handler runs, and feeds the OpenAPI document — so the
document cannot drift from what is served. Each route module declares its endpoints on
their handlers (:class:`Declarations`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
from aiohttp import web

from projections.domain import Account
from services.commands.tokens import PrincipalKind

from . import wire
from .appkeys import SETTINGS
from .auth import Authenticator, Principal, forbidden
from .errors import ApiError, from_validation, invalid
from .httpserver import close_after_response
from .wire import storable

_json = msgspec.json.Encoder()

B = TypeVar("B")
Q = TypeVar("Q")


@dataclass
class Context(Generic[B, Q]):
    """What a handler gets: the request, the caller, and the decoded body and query."""

    request: web.Request
    principal: Principal | None
    account: Account | None
    body: B
    query: Q

    @property
    def me(self) -> Account:
        """The calling account (of an endpoint that only accounts may call)."""
        assert self.account is not None
        return self.account


Handler = Callable[[Context[Any, Any]], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    operation_id: str
    tag: str
    auth: tuple[PrincipalKind, ...] = ()
    body: type[Any] | None = None
    query: type[Any] | None = None
    # status -> (body type or None, description); errors other than the common ones.
    responses: Mapping[int, tuple[Any, str]] = field(default_factory=dict)
    errors: Mapping[int, str] = field(default_factory=dict)
    raw_response: str | None = None  # content type of a non-JSON success body
    # request headers the endpoint reads (beyond Authorization): name -> description
    headers: Mapping[str, str] = field(default_factory=dict)


class Declarations:
    """The endpoints of a route module, each declared on its handler, in declaration order:

    ``@route("GET", "/v1/me", summary=..., operation_id="getMe", tag="me", ...)``
    """

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def __call__(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        operation_id: str,
        tag: str,
        auth: tuple[PrincipalKind, ...] = (),
        body: type[Any] | None = None,
        query: type[Any] | None = None,
        responses: Mapping[int, tuple[Any, str]] | None = None,
        errors: Mapping[int, str] | None = None,
        raw_response: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Callable[[H], H]:
        def declare(handler: H) -> H:
            self.endpoints.append(
                Endpoint(
                    method,
                    path,
                    handler,
                    summary,
                    operation_id,
                    tag,
                    auth=auth,
                    body=body,
                    query=query,
                    responses=responses or {},
                    errors=errors or {},
                    raw_response=raw_response,
                    headers=headers or {},
                )
            )
            return handler

        return declare


def json_response(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(body), status=status, content_type="application/json")


def _decode_query(request: web.Request, query_type: type[Any]) -> Any:
    params: dict[str, str] = {}
    for key, value in request.query.items():
        if key in params:
            raise ApiError(
                422,
                "invalid_request",
                f"{key}: given more than once",
                errors=[wire.FieldError(key, "given more than once")],
            )
        params[key] = value
    try:
        return msgspec.convert(params, query_type, strict=False)
    except msgspec.ValidationError as exc:
        raise from_validation(exc, root="query") from None


async def _decode_body(request: web.Request, body_type: type[Any]) -> Any:
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be application/json, not {request.content_type or 'nothing'}",
        )
    body_timeout = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(body_timeout):
            raw = await request.read()
    except TimeoutError:
        # A client that stops sending mid-body must hold neither this handler nor the connection.
        close_after_response(request)
        raise ApiError(
            408,
            "request_timeout",
            f"the request body did not arrive within {body_timeout:g} s",
            headers={"Connection": "close"},
        ) from None
    except web.RequestPayloadError:
        # Body framing aiohttp's parser refused (a bad chunk): the client's error, not ours,
        # and the connection cannot be read on.
        close_after_response(request)
        raise ApiError(
            400, "bad_request", "malformed request body", headers={"Connection": "close"}
        ) from None
    except ConnectionResetError:
        # The client hung up mid-body (a connector stopping, a dropped link): nothing was
        # read, nothing done, and no one is left to answer. Not a server error.
        close_after_response(request)
        raise ApiError(
            400, "bad_request", "the connection closed before the body arrived"
        ) from None
    try:
        return msgspec.json.decode(raw, type=body_type)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise from_validation(exc) from None
    except UnicodeDecodeError:
        # msgspec checks UTF-8 only when it makes a str, and then raises this.
        raise invalid("$", "the body is not UTF-8") from None


def _check_storable(request: web.Request) -> None:
    """Path and query parameters are text PostgreSQL can hold: no NUL (and nothing that is
    not UTF-8). Checked at the edge, so no query ever sees one."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        if not storable(value):
            raise invalid(name, "must not contain NUL or characters that are not UTF-8")


def bind(
    endpoint: Endpoint, authenticator: Callable[[], Authenticator]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of an endpoint: auth, then body and query, then the handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        principal: Principal | None = None
        account: Account | None = None
        if endpoint.auth:
            principal, account = await authenticator().resolve(request.headers.get("Authorization"))
            if principal.kind not in endpoint.auth:
                raise forbidden(f"this endpoint is not for the {principal.kind}")
        _check_storable(request)
        body = await _decode_body(request, endpoint.body) if endpoint.body else None
        query = _decode_query(request, endpoint.query) if endpoint.query else None
        return await endpoint.handler(Context(request, principal, account, body, query))

    handle.__name__ = endpoint.operation_id
    return handle
