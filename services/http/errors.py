"""HTTP errors: one exception type for the HTTP edge's own refusals (:class:`ApiError`: a
malformed request, a missing token...), one table for the domain's (:data:`DOMAIN_PROBLEMS`),
and one place that turns anything into problem+json (:func:`problem_middleware`)."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import NamedTuple

import msgspec
import structlog
from aiohttp import web

from eventstore.database import unavailable
from projections import domain
from projections.domain import DomainError

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


class DomainProblem(NamedTuple):
    """How the API reports a domain error: its status and code, and for the refusal of one
    request field (422 ``invalid_request``), that field."""

    status: int
    code: str
    field: str | None = None


# Every refusal of the domain, as the API reports it (a class not listed: as its nearest
# listed base class). The only place HTTP statuses meet domain errors.
DOMAIN_PROBLEMS: Mapping[type[DomainError], DomainProblem] = {
    DomainError: DomainProblem(409, "conflict"),
    domain.AccountExists: DomainProblem(409, "account_exists"),
    domain.UnknownAccount: DomainProblem(404, "not_found"),
    domain.ManagedAccount: DomainProblem(403, "managed_account"),
    domain.AccountBusy: DomainProblem(409, "conflict"),
    domain.UnknownServer: DomainProblem(404, "not_found"),
    domain.UnknownOwner: DomainProblem(422, "invalid_request", "$.owner"),
    domain.NotAServerVersion: DomainProblem(422, "invalid_request", "$.version"),
    domain.ServerTooOld: DomainProblem(422, "server_too_old"),
    domain.ServerExists: DomainProblem(409, "server_exists"),
    domain.NoOffer: DomainProblem(404, "not_found"),
    domain.OwnerKeepsAccess: DomainProblem(422, "invalid_request", "account"),
    domain.CannotLeaveOwnServer: DomainProblem(422, "invalid_request", "sid"),
    domain.SyncEnabled: DomainProblem(409, "sync_enabled"),
    domain.CannotFriendSelf: DomainProblem(422, "invalid_request", "account"),
    domain.ActivityHidden: DomainProblem(404, "not_found"),
}


def from_domain(error: DomainError) -> ApiError:
    """The problem details of a domain error (:data:`DOMAIN_PROBLEMS`)."""
    problem = next(DOMAIN_PROBLEMS[c] for c in type(error).__mro__ if c in DOMAIN_PROBLEMS)
    if problem.field is None:
        return ApiError(problem.status, problem.code, error.message)
    return ApiError(
        problem.status,
        problem.code,
        f"{problem.field}: {error.message}",
        errors=[FieldError(problem.field, error.message)],
    )


_FIELD = re.compile(r"^`(?P<field>\w+)`: (?P<message>.*)$", re.DOTALL)
_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]+)`)?$", re.DOTALL)


def from_validation(
    exc: msgspec.ValidationError | msgspec.DecodeError, *, root: str = "$"
) -> ApiError:
    """A 422 from msgspec's message (``Expected `int`, got `str` - at `$.limit```)."""
    match = _AT_PATH.match(str(exc))
    assert match is not None
    path, message = match.group("path") or "$", match.group("message")
    # A struct's own check (``__post_init__``) names the field it failed on: "`at`: ...".
    field = _FIELD.match(message)
    if field is not None:
        path, message = f"{path}.{field.group('field')}", field.group("message")
    if root != "$":
        path = root if path == "$" else path.removeprefix("$.")  # query parameters: plainly
    return invalid(path, message)


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
    except DomainError as error:
        return problem_response(from_domain(error))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(
            ApiError(exc.status, _CODES.get(exc.status, "error"), exc.reason, headers=_allow(exc))
        )
    except Exception as exc:
        if unavailable(exc):
            return _database_unavailable(request, exc)
        log.exception("request_failed", method=request.method, path=request.path)
        return problem_response(ApiError(500, "internal_error", "an unexpected error occurred"))


# Seconds a client is asked to wait before trying again while the database cannot be reached.
RETRY_AFTER_SECONDS = 2


class DatabaseHealth:
    """Whether the database answers, as this process last found it. An outage is logged once
    as it starts (``database_unavailable``) and once as the database answers again
    (``database_recovered``, with its duration), however many requests meet it."""

    def __init__(self) -> None:
        self._down_since: float | None = None

    @property
    def up(self) -> bool:
        return self._down_since is None

    def failed(self, error: BaseException) -> None:
        """The database could not be reached (``error`` says how)."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            detail = str(error) or repr(error)
            log.warning("database_unavailable", error=type(error).__name__, detail=detail)

    def answered(self) -> None:
        """The database answered (called on every connection back from use: cheap)."""
        if self._down_since is not None:
            outage = time.monotonic() - self._down_since
            self._down_since = None
            log.info("database_recovered", outage_seconds=round(outage, 3))


def _database_unavailable(request: web.Request, exc: Exception) -> web.Response:
    # Imported here: the app's keys name the app's parts, and most of them import this module.
    from .appkeys import DATABASE_HEALTH

    health = request.app.get(DATABASE_HEALTH)
    if health is not None:
        health.failed(exc)
    return problem_response(
        ApiError(
            503,
            "database_unavailable",
            "the database cannot be reached; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    )


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}
