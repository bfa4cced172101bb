"""The OpenAPI 3.1 document, generated from the endpoint declarations and msgspec types."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from . import wire
from .endpoints import Endpoint

_REF = "#/components/schemas/{name}"
# Every endpoint with a body can answer these; every authenticated one, 401 and 403.
_COMMON_BODY_ERRORS = {
    408: "The body did not arrive within `WATCHLEDGER_BODY_TIMEOUT` (`request_timeout`).",
    413: "Body over 1 MiB (`request_too_large`), or a batch over 1,000 items (`batch_too_large`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    422: "Invalid body (`invalid_request`, with field-level `errors`).",
}
_AUTH_ERRORS = {
    401: "No token, or an unknown one (`unauthorized`).",
    403: "A known token that may not call this endpoint (`forbidden`).",
    # Every authenticated endpoint reads the database (a token names its owner's stored hash).
    503: "The database cannot be reached (`database_unavailable`); retry after `Retry-After`.",
}
_DESCRIPTION = """Watch state, history and sync for movies and TV, on an append-only log.

**Titles.** A title is named by ids: Plex's `plex://movie|show|season|episode/<24 hex>`; the
providers' `imdb://<kind>/tt<digits>`, `tmdb://<kind>/<digits>` and `tvdb://<kind>/<digits>`
(kind `movie`, `show` or `episode`: how Jellyfin and Emby know titles); an episode by its show
and numbers, `<show id>/s<season>e<episode>` (`tvdb://show/81189/s1e1`; season 0: specials).
An action names its title by `guid` and may list more of its ids in `ids` (at most 8); ids of
different kinds of title are `conflicting_ids`. Music (`plex://artist|album|track/...`) is not
synced (`music_not_synced`); any other form — legacy agents such as
`com.plexapp.agents.imdb://...`, `local://...`, a malformed id — is `unsupported_guid`. A movie
with an edition, and in-progress playback, are not synced either.

**Retries are safe with a client id.** Give each action an `id` (a UUID of your own): sending it
again — after a timeout, a lost answer, a crash — answers `duplicate` and records nothing more.
Without an `id`, an action with the same type, time (to the whole second) and rating as a
recorded one, naming the title by any id the recorded one also named, is the duplicate (so a
server echoing back a change it was sent records nothing, even under its own ids for the title
and with no finer time than seconds).

**Errors** are `application/problem+json` with a stable `code`. Malformed HTTP gets 400
`bad_request`; while the database cannot be reached, 503 `database_unavailable` with
`Retry-After`.
"""


def _schema_hook(type_: Any) -> dict[str, Any]:
    if type_ is msgspec.Raw:
        return {"description": "any JSON value"}
    raise NotImplementedError


def build_openapi(endpoints: Sequence[Endpoint], *, version: str) -> dict[str, Any]:
    types: list[Any] = [wire.Problem]
    for e in endpoints:
        types += [t for t in (e.body, e.query) if t is not None]
        types += [t for t, _ in e.responses.values() if t is not None]
    schemas, components = msgspec.json.schema_components(
        types, ref_template=_REF, schema_hook=_schema_hook
    )
    by_type = dict(zip(types, schemas, strict=True))
    problem = {
        "application/problem+json": {"schema": by_type[wire.Problem]},
    }

    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        operation: dict[str, Any] = {
            "operationId": e.operation_id,
            "summary": e.summary,
            "tags": [e.tag],
            "responses": {},
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)(?::[^}]*)?\}", e.path)
        ]
        if e.query is not None:
            query_schema = components[e.query.__name__]
            required = set(query_schema.get("required", []))
            for name, schema in query_schema["properties"].items():
                params.append(
                    {"name": name, "in": "query", "required": name in required, "schema": schema}
                )
        params += [
            {"name": name, "in": "header", "description": text, "schema": {"type": "string"}}
            for name, text in e.headers.items()
        ]
        if params:
            operation["parameters"] = params
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": by_type[e.body]}},
            }
        for status, (body_type, description) in e.responses.items():
            response: dict[str, Any] = {"description": description}
            if body_type is not None:
                response["content"] = {"application/json": {"schema": by_type[body_type]}}
            elif e.raw_response:
                response["content"] = {e.raw_response: {"schema": {"type": "string"}}}
            operation["responses"][str(status)] = response
        errors = {
            **(_AUTH_ERRORS if e.auth else {}),
            **(_COMMON_BODY_ERRORS if e.body else {}),
            **({422: "Invalid query parameters (`invalid_request`)."} if e.query else {}),
            **e.errors,
        }
        for status, description in sorted(errors.items()):
            operation["responses"][str(status)] = {"description": description, "content": problem}
        if e.auth:
            operation["security"] = [{"bearer": []}]
            operation["description"] = "Callers: " + ", ".join(e.auth) + "."
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", e.path)
        paths.setdefault(path, {})[e.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "watchledger",
            "version": version,
            "description": _DESCRIPTION,
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
