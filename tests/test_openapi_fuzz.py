"""Schemathesis over the service's own OpenAPI document: no request, valid or not, gets a 5xx.

The document is fetched from a real `watchledger serve` (``GET /v1/openapi.json``) and every
operation is fuzzed (schemathesis's coverage cases, then positive and negative random cases,
all from a fixed seed) as each kind of caller it accepts, with a valid token: the operator, an
account that owns a server, and that server (its own ``sid`` pinned, so its requests get past
"not your server"). The account also calls every ``{sid}`` operation on its own server, and an
anonymous caller fuzzes every operation with whatever credentials schemathesis makes up. Each
caller gets its own service and database, so no run depends on another or on test order.

Random strings seldom hit the inputs that break services (a NUL, year 1 minus an hour, 2**63),
so every parameter and body field also draws now and then from :data:`DICTIONARIES`
(schemathesis dictionaries). Schemathesis never puts a NUL or a ``/`` in a *path* parameter
(by design: many stacks reject them before routing); ``test_hostile_input.py`` and
``test_hostile_properties.py`` cover those.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast, get_args

import msgspec.inspect
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from services.commands.tokens import PrincipalKind
from services.http.endpoints import Endpoint
from services.http.routes import ENDPOINTS
from tests.live import LiveService, live_service

SEED = 20_260_101
# Random cases per operation and caller, after schemathesis's coverage cases (fewer for the
# anonymous caller, whose requests all end at the token check).
MAX_EXAMPLES = 100
ANONYMOUS_EXAMPLES = 20
# How often a generated parameter or field is replaced by a value from its dictionary: the
# generic hostile one, or one of right values with hostile twists (see DICTIONARIES).
HOSTILE_PROBABILITY = 0.3
RIGHT_PROBABILITY = 0.8
OPERATOR_TOKEN = "fuzzing-operator-93d0b7a1e4c65f28a1d7"
OWNER = "fuzz-owner"
GUEST = "fuzz-guest"
SERVER = "srv-fuzz"
MOVIE = "plex://movie/5d776825880197001ec967c6"
EPISODE = "plex://episode/5d9c1276e9d5a1001f4f4d6d"
# Long-polls may hold for up to 60 s; valid waits are cut to this (see `_bounded`).
SHORT_WAIT = 0.05
# A feed stream never ends by itself: schemathesis reads one for this long (a request's
# timeout is its whole read of an event stream), then hangs up. The service's heartbeat is
# shorter, so it finds the client gone (and frees the token's stream slot) at once.
STREAM_READ = 1.0
STREAM_HEARTBEAT = "0.1"


def _cursor(value: Any) -> str:
    """A cursor shaped like the API's own (unpadded base64url of JSON), holding ``value``."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


_NUL = "\u0000"
_LONG = "x" * 10_000
_HOSTILE_TEXT: list[str | int | float] = [
    _NUL,
    "\u0001\u001f\u007f\u0085\u2028",
    "\u202e\ufeff\uffff",
    _LONG,
]
_HOSTILE_TIMES: list[str | int | float] = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "2026-01-01T00:00:00+23:59",
]
_HOSTILE_NUMBERS: list[str | int | float] = [
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    -1,
    1e308,
    -1e-308,
]
# Values a parameter or field takes now and then: in positive cases those that fit its schema,
# in negative ones those that do not (integer fields: the entries that parse as integers).
# Fields that must be right for a request to get anywhere (a title, an account, a version)
# mostly get right ones, with hostile twists; every other field gets "hostile".
DICTIONARIES: dict[str, list[str | int | float]] = {
    "hostile": [*_HOSTILE_TEXT, *_HOSTILE_TIMES, *_HOSTILE_NUMBERS, MOVIE, "wls.\u0000.x"],
    "titles": [MOVIE, EPISODE, MOVIE + _NUL, _NUL, _LONG],
    "accounts": [OWNER, GUEST, OWNER + _NUL, _NUL, _LONG],
    "servers": [SERVER, SERVER + _NUL, _NUL, _LONG],
    "versions": ["1.32.5.7349", "1.32.5." + _NUL, "1.27.1", f"{2**70}.0.0", _NUL],
    "times": [*_HOSTILE_TIMES, "2026-01-01T12:00:00Z"],
    "cursors": [
        _cursor(_NUL),
        _cursor(MOVIE + _NUL),
        _cursor(2**63),
        _cursor(-1),
        _cursor(["0001-01-01T00:00:00+01:00", 1]),
        _cursor(["2026-01-01T00:00:00Z", 2**63]),
        _cursor(["2026-01-01T00:00:00Z", -(2**63) - 1]),
        str(2**63),
        _NUL,
    ],
}
_DICTIONARY_OF_FIELD = {
    "guid": "titles",
    "account": "accounts",
    "owner": "accounts",
    "sid": "servers",
    "version": "versions",
    "at": "times",
    "updated_after": "times",
    "cursor": "cursors",
}


def _fields(struct: type[Any], prefix: str = "") -> Iterator[str]:
    """Every leaf field of a body type, as schemathesis names them (``actions[*].at``)."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        name = prefix + field.encode_name
        if isinstance(field.type, msgspec.inspect.ListType) and isinstance(
            field.type.item_type, msgspec.inspect.StructType
        ):
            yield from _fields(field.type.item_type.cls, f"{name}[*].")
        else:
            yield name


def _dictionary_bindings() -> dict[str, dict[str, Any]]:
    """Every path and query parameter and body field of every operation, bound to its
    dictionary."""
    names: set[str] = set()
    for endpoint in ENDPOINTS:
        names |= {f"path.{name}" for name in re.findall(r"\{(\w+)", endpoint.path)}
        if endpoint.query is not None:
            names |= {f"query.{name}" for name in _fields(endpoint.query)}
        if endpoint.body is not None:
            names |= {f"body.{name}" for name in _fields(endpoint.body)}
    bindings = {}
    for name in sorted(names):
        dictionary = _DICTIONARY_OF_FIELD.get(re.split(r"[.\]]", name)[-1], "hostile")
        probability = HOSTILE_PROBABILITY if dictionary == "hostile" else RIGHT_PROBABILITY
        bindings[name] = {"dictionary": dictionary, "probability": probability}
    return bindings


BY_ID = {e.operation_id: e for e in ENDPOINTS}
# Operations that answer with an event stream, by (method, path template).
_STREAMED = {(e.method, e.path): e.raw_response == "text/event-stream" for e in ENDPOINTS}


@dataclass(frozen=True)
class Caller:
    """Who calls which operations; ``pin_sid``: the path's ``sid`` is the caller's server."""

    name: str
    kind: PrincipalKind | None
    operations: tuple[str, ...]
    pin_sid: bool = False
    examples: int = MAX_EXAMPLES


def _rotates(endpoint: Endpoint) -> bool:
    """Whether the endpoint replaces a token: once it has, the rest of a run is all 401s."""
    return endpoint.path.endswith("/token")


def _accepting(kind: PrincipalKind, *, rotating: bool = False) -> tuple[str, ...]:
    return tuple(e.operation_id for e in ENDPOINTS if kind in e.auth and _rotates(e) == rotating)


CALLERS = [
    Caller(
        "anonymous", None, tuple(e.operation_id for e in ENDPOINTS), examples=ANONYMOUS_EXAMPLES
    ),
    Caller("operator", "operator", _accepting("operator")),
    Caller("account", "account", _accepting("account")),
    Caller(
        "owner",
        "account",
        tuple(e for e in _accepting("account") if "{sid}" in BY_ID[e].path),
        pin_sid=True,
    ),
    Caller("server", "server", _accepting("server"), pin_sid=True),
    # Token replacement gets a run (a service) of its own per kind of caller.
    *(
        Caller(f"{kind}-rotating", kind, _accepting(kind, rotating=True), pin_sid=True)
        for kind in get_args(PrincipalKind)
        if _accepting(kind, rotating=True)
    ),
]


def test_every_operation_is_fuzzed_with_a_valid_token_of_each_kind_it_accepts() -> None:
    for endpoint in ENDPOINTS:
        for kind in endpoint.auth:
            callers = [c for c in CALLERS if c.kind == kind]
            assert any(endpoint.operation_id in c.operations for c in callers), endpoint


def _call(base_url: str, method: str, path: str, token: str, body: Any = None) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - our own service, on 127.0.0.1
        base_url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    decoded: dict[str, Any] = json.loads(raw) if raw else {}
    return decoded


def _populate(base_url: str) -> dict[PrincipalKind, str]:
    """An owner with sync on, its server (shared with a guest, also syncing), some state,
    history and queued changes; a token of each kind."""
    tokens: dict[PrincipalKind, str] = {"operator": OPERATOR_TOKEN}
    owner = {"id": OWNER, "kind": "full", "name": "Owner"}
    tokens["account"] = _call(base_url, "POST", "/v1/accounts", OPERATOR_TOKEN, owner)["token"]
    guest = {"id": GUEST, "kind": "full", "name": "Guest"}
    guest_token = _call(base_url, "POST", "/v1/accounts", OPERATOR_TOKEN, guest)["token"]
    server = {"id": SERVER, "name": "Fuzz", "version": "1.32.5.7349"}
    tokens["server"] = _call(base_url, "POST", "/v1/servers", tokens["account"], server)["token"]
    _call(base_url, "PATCH", "/v1/me", tokens["account"], {"sync_enabled": True})
    _call(base_url, "PUT", f"/v1/servers/{SERVER}/access/{GUEST}", tokens["account"])
    _call(base_url, "PATCH", "/v1/me", guest_token, {"sync_enabled": True})
    actions = [
        {"type": "watched", "guid": MOVIE, "at": "2026-01-01T12:00:00Z"},
        {"type": "rated", "guid": MOVIE, "rating": 8, "at": "2026-01-01T12:01:00Z"},
        {"type": "watched", "guid": EPISODE, "at": "2026-01-02T12:00:00Z"},
    ]
    _call(base_url, "POST", "/v1/me/actions", tokens["account"], {"actions": actions})
    return tokens


@dataclass
class FuzzTarget:
    caller: Caller
    service: LiveService
    tokens: dict[PrincipalKind, str]


@pytest.fixture(autouse=True)
def _lazy_schema_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas read and rewrite ``item._nodeid``, which pytest 9.2
    items no longer have (their id lives in ``item._id``): give them one to read."""
    node: Any = request.node
    if not hasattr(node, "_nodeid"):
        node._nodeid = node.nodeid


@pytest.fixture(params=CALLERS, ids=[c.name for c in CALLERS])
def fuzz_target(
    request: pytest.FixtureRequest, server_url: str, template_name: str
) -> Iterator[FuzzTarget]:
    with live_service(
        server_url,
        template_name,
        OPERATOR_TOKEN,
        WATCHLEDGER_STREAM_HEARTBEAT=STREAM_HEARTBEAT,
    ) as service:
        yield FuzzTarget(request.param, service, _populate(service.base_url))


@pytest.fixture
def fuzz_schema(fuzz_target: FuzzTarget) -> schemathesis.BaseSchema:
    """The live document, with this caller's token and operations and the fuzzing settings."""
    caller = fuzz_target.caller
    parameters: dict[str, Any] = _dictionary_bindings()
    if caller.pin_sid:
        parameters["path.sid"] = SERVER
    settings: dict[str, Any] = {
        "seed": SEED,
        "suppress-health-check": ["all"],
        "dictionaries": {name: {"values": values} for name, values in DICTIONARIES.items()},
        "parameters": parameters,
        "generation": {
            "mode": "all",
            "max-examples": caller.examples,
            "deterministic": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "operations": [{"exclude-operation-id": list(caller.operations), "enabled": False}],
    }
    if caller.kind is not None:
        token = fuzz_target.tokens[caller.kind]
        settings["auth"] = {"openapi": {"bearer": {"bearer": token}}}
    return schemathesis.openapi.from_url(
        f"{fuzz_target.service.base_url}/v1/openapi.json",
        config=schemathesis.Config.from_dict(settings),
    )


def _bounded(case: schemathesis.Case[Any]) -> None:
    """A long-poll's valid ``wait`` cut short: whether it parses is under test here, not how
    long it holds."""
    query = case.query
    wait = query.get("wait") if query else None
    if query is None or isinstance(wait, bool) or not isinstance(wait, str | int | float):
        return
    try:
        seconds = float(wait)
    except ValueError:
        return
    if 0 < seconds <= 60:
        query["wait"] = SHORT_WAIT


schema = schemathesis.pytest.from_fixture("fuzz_schema")
_parametrize = cast(Callable[[Callable[..., None]], Callable[..., None]], schema.parametrize())


@_parametrize
def test_no_request_gets_a_server_error(
    case: schemathesis.Case[Any], fuzz_target: FuzzTarget
) -> None:
    service = fuzz_target.service
    _bounded(case)
    logged = service.log_size
    streamed = _STREAMED.get((case.method.upper(), case.path), False)
    response = case.call(base_url=service.base_url, timeout=STREAM_READ if streamed else 30)
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except FailureGroup as failure:
        failure.add_note(service.describe_errors(since=logged))
        raise
