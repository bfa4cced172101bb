"""HTTP errors: one exception type, one place that turns anything into problem+json."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import msgspec
import structlog
from aiohttp import web

from .wire import FieldError, Problem

log = structlog.get_logger(__name__)

PROBLEM_TYPE = "application/problem+json"
_encoder = msgspec.json.Encoder()

# aiohttp's own HTTP errors (no route, wrong method, body too large...) get stable codes too.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the API reports to its client as problem details."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def invalid(field: str, message: str) -> ApiError:
    """A 422 ``invalid_request`` naming one field."""
    return ApiError(
        422,
        "invalid_request",
        f"{field}: {message}",
        errors=[FieldError(field, message)],
    )


_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]+)`)?$", re.DOTALL)


def from_validation(
    exc: msgspec.ValidationError | msgspec.DecodeError, *, root: str = "$"
) -> ApiError:
    """A 422 from msgspec's message (``Expected `int`, got `str` - at `$.limit```)."""
    match = _AT_PATH.match(str(exc))
    assert match is not None
    path = match.group("path") or root
    if root != "$" and path.startswith("$."):
        path = path[2:]  # query parameters are named plainly
    return invalid(path, match.group("message"))


def problem_response(error: ApiError) -> web.Response:
    body = Problem(
        type="about:blank",
        title=HTTPStatus(error.status).phrase,
        status=error.status,
        detail=error.detail,
        code=error.code,
        errors=error.errors,
    )
    return web.Response(
        body=_encoder.encode(body),
        status=error.status,
        content_type=PROBLEM_TYPE,
        headers=error.headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as problem+json: ours, aiohttp's, and unexpected ones (logged)."""
    try:
        return await handler(request)
    except ApiError as error:
        return problem_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(
            ApiError(exc.status, _CODES.get(exc.status, "error"), exc.reason, headers=_allow(exc))
        )
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        return problem_response(ApiError(500, "internal_error", "an unexpected error occurred"))


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
