"""Property: no request, however hostile, gets a 5xx.

Every endpoint the service declares (``services.http.routes.ENDPOINTS``) gets requests whose path
parameters, query parameters, headers or bodies are drawn from hostile values: any string (NUL,
lone surrogates, control characters, very long ones), any bytes (not UTF-8), integers past
64 bits, floats, NaN and the infinities, and timestamps whose offset carries them out of range.
Bodies follow the endpoint's declared body type, so they reach its handler, with any field
hostile, and their strings may go out as raw bytes that are not UTF-8. Requests are written byte
for byte on a raw socket (`tests.hostile.send`) to a real server on a real database.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import msgspec.inspect as mi
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from services.http.endpoints import Endpoint
from services.http.routes import ENDPOINTS
from tests.api import EPISODE, MOVIE, SHOW
from tests.hostile import (
    ACCOUNT,
    SERVER,
    Logged,
    Principals,
    RawResponse,
    cursor,
    explain,
    percent,
    principals,
    send,
    server_errors,
)

# A failing example holding a very long string is reported in full; Hypothesis warns that the
# report is long (and -W error would turn that warning into the failure instead of the 5xx).
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one server for all of a test's examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

# -- hostile values ---------------------------------------------------------------------------

MAX_BODY = 1024 * 1024
CONTROL = "".join(map(chr, range(32))) + "\x7f\x85\u2028\u2029\u202e\ufeff\uffff"
SPECIAL = ["\x00", "a\x00b", MOVIE + "\x00", "\ud800", "\udcff", "\ud83d", "%00", "../.."]


def _texts(longest: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(st.characters(), max_size=40),  # any code point, lone surrogates included
        st.text(st.sampled_from(CONTROL + "\ud800\udfff\udcff"), min_size=1, max_size=8),
        st.builds(lambda c, n: c * n, st.characters(), st.integers(100, longest)),
        st.sampled_from(SPECIAL),
        st.tuples(st.text(max_size=10), st.text(max_size=10)).map("\x00".join),
    )


# Long strings go in bodies (which stay under the 1 MiB limit: one over it is cut off
# mid-upload, which a raw client may see as a reset); in URLs, shorter ones.
text = _texts(10_000)
short_text = _texts(200)
integers = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -1, 0]),
)
floats = st.floats()  # NaN and the infinities too (JSON gets Python's non-JSON words)
OFFSETS = ["Z", "+00:00", "+01:00", "-01:00", "+23:59", "-23:59", "+14:00", "-12:00", "+24:00"]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339-ish times at the edges: years 1 and 9999, extreme offsets, odd fields."""
    year = draw(st.one_of(st.sampled_from([1, 2, 1970, 2026, 9998, 9999]), st.integers(0, 10_000)))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = (
        draw(st.integers(0, 24)),
        draw(st.integers(0, 60)),
        draw(st.integers(0, 61)),
    )
    fraction = draw(st.sampled_from(["", ".5", ".999999", ".9999999999"]))
    offset = draw(
        st.one_of(st.sampled_from(OFFSETS), st.from_regex(r"[+-]\d\d:\d\d", fullmatch=True))
    )
    date = f"{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"
    return date + fraction + offset


times = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]), timestamps()
)


def _scalars(texts: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.one_of(texts, texts, texts, integers, floats, times, st.none(), st.booleans())


scalars = _scalars(text)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
# Cursors the API never issued, shaped like those it does (unpadded base64url of JSON): a
# string (state), an integer (changes), a time and a position (history), or anything.
forged_cursors = st.one_of(
    st.builds(cursor, short_text),
    st.builds(cursor, integers),
    st.builds(cursor, st.tuples(times, integers)),
    st.builds(cursor, st.lists(_scalars(short_text), max_size=3)),
    short_text,
)

# Right values for the fields a request must get right to get anywhere (any other field: a
# value of its declared type). Times are right in type and still extreme.
RIGHT: dict[str, st.SearchStrategy[Any]] = {
    "guid": st.sampled_from([MOVIE, EPISODE, SHOW, MOVIE.upper()]),
    "account": st.just(ACCOUNT),
    "owner": st.just(ACCOUNT),
    "sid": st.just(SERVER),
    "version": st.sampled_from(["1.32.5.7349", "1.27.2", "1.40.0-beta+x"]),
    "at": times,
    "updated_after": times,
    "rating": st.one_of(st.none(), st.integers(1, 10)),
    "edition": st.none(),
}
# Fields with hostile values of their own besides any scalar; a cursor is always forged.
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "cursor": forged_cursors,
    "guid": st.sampled_from([MOVIE + "\x00", MOVIE + "\udcff", "plex://movie/" + "f" * 4_000]),
}
ids = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)


def _of_type(t: mi.Type) -> st.SearchStrategy[Any]:
    """Right values of type ``t``."""
    if isinstance(t, mi.Metadata):
        return _of_type(t.type)
    if isinstance(t, mi.StructType):
        return fields_of(t.cls)
    if isinstance(t, mi.ListType):
        return st.lists(_of_type(t.item_type), min_size=1, max_size=3)
    if isinstance(t, mi.UnionType):
        return st.one_of([_of_type(member) for member in t.types])
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.IntType | mi.FloatType):
        low = t.ge if t.gt is None else t.gt + 1
        high = t.le if t.lt is None else t.lt - 1
        if isinstance(t, mi.IntType):
            return st.integers(
                None if low is None else int(low), None if high is None else int(high)
            )
        return st.floats(low, high, allow_nan=False)
    simple: dict[type[mi.Type], st.SearchStrategy[Any]] = {
        mi.StrType: ids,
        mi.BoolType: st.booleans(),
        mi.NoneType: st.none(),
        mi.DateTimeType: times,
        mi.UUIDType: st.uuids().map(str),
    }
    return simple.get(type(t), json_values)


def right(t: mi.Type, name: str) -> st.SearchStrategy[Any]:
    return RIGHT[name] if name in RIGHT else _of_type(t)


def hostile(name: str, texts: st.SearchStrategy[str] = text) -> st.SearchStrategy[Any]:
    return st.one_of(HOSTILE.get(name, st.nothing()), _scalars(texts))


_now_and_then = st.integers(0, 9).map(lambda n: n == 0)


@st.composite
def fields_of(
    draw: st.DrawFn, cls: type[Any], texts: st.SearchStrategy[str] = text
) -> dict[str, Any]:
    """Fields for the struct ``cls``, all right but at most one (any value at all there), a
    required one left out now and then, one it does not have added now and then."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    names = [f.encode_name for f in info.fields]
    bad = draw(st.one_of(st.none(), st.sampled_from(names)))  # all right half the time
    values: dict[str, Any] = {}
    for field in info.fields:
        name = field.encode_name
        if name == bad:
            values[name] = draw(hostile(name, texts))
        elif name in HOSTILE and name not in RIGHT:
            continue  # only ever hostile (a cursor): given when it is the hostile one
        elif draw(_now_and_then if field.required else st.booleans()) != field.required:
            values[name] = draw(right(field.type, name))
    if draw(_now_and_then):
        values[draw(texts)] = draw(_scalars(texts))
    return values


def encode_json(value: Any, mode: str) -> bytes:
    """JSON of ``value``. ``escaped``: lone surrogates written ``\\ud800`` (valid JSON, not
    valid Unicode); ``raw``: strings as raw bytes, lone surrogates becoming bytes that are not
    UTF-8 (``\\udcff`` as ``\\xff``, the others as CESU-8)."""
    if mode == "escaped":
        return json.dumps(value).encode()
    raw = json.dumps(value, ensure_ascii=False)
    try:
        return raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return raw.encode("utf-8", "surrogatepass")


# -- requests ---------------------------------------------------------------------------------

PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")
NOT_IN_A_TARGET = b" \r\n#?/"


def _hex(data: bytes) -> bytes:
    return "".join(f"%{byte:02X}" for byte in data).encode()


def path_values(name: str) -> st.SearchStrategy[bytes]:
    """A path parameter as sent: percent-encoded text or bytes, or bytes as they are."""
    return st.one_of(
        RIGHT.get(name, ids).map(lambda v: percent(str(v)).encode()),
        short_text.map(lambda v: percent(v).encode()),
        st.binary(min_size=1, max_size=40).map(_hex),
        st.binary(min_size=1, max_size=40).map(
            lambda b: bytes(x for x in b if x not in NOT_IN_A_TARGET) or b"%00"
        ),
    )


def _waits(value: str) -> bool:
    """Whether a ``wait`` would hold a long-poll (up to 60 s): such waits are not sent."""
    try:
        return 0 < float(value) <= 60
    except ValueError:
        return False


def _query(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters as text (a long-poll's ``wait`` kept from holding)."""
    pairs = [
        (k, json.dumps(v) if v is None or isinstance(v, bool) else str(v))
        for k, v in values.items()
    ]
    return [(k, "0" if k == "wait" and _waits(v) else v) for k, v in pairs]


@st.composite
def targets(draw: st.DrawFn, endpoint: Endpoint, *, hostile: str) -> bytes:
    """The request target of ``endpoint``: hostile path parameters if ``hostile`` is
    ``path`` (right ones otherwise), a hostile query if it is ``query`` (none otherwise)."""

    def parameter(match: re.Match[str]) -> str:
        name = match.group(1)
        if hostile == "path":
            return draw(path_values(name)).decode("latin-1")
        return percent(str(draw(RIGHT.get(name, ids))))

    path = PARAMETER.sub(parameter, endpoint.path).encode("latin-1")
    if hostile != "query" or endpoint.query is None:
        return path
    pairs = _query(draw(fields_of(endpoint.query, short_text)))
    if draw(_now_and_then) and pairs:  # one given twice
        pairs.append(pairs[0])
    query = "&".join(f"{percent(k)}={percent(v)}" for k, v in pairs)
    # Longer than aiohttp's request line (8 KiB) is refused before it is read to the end,
    # which a raw client may see as a reset rather than the 400.
    assume(len(path) + len(query) < 8_000)
    return path + b"?" + query.encode()


def callers(endpoint: Endpoint) -> st.SearchStrategy[str | None]:
    """Who calls: a kind the endpoint accepts (nobody if it takes no token)."""
    return st.sampled_from(list(endpoint.auth)) if endpoint.auth else st.none()


def _header_value(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


header_bytes = st.binary(max_size=80).map(_header_value)
tokens = st.one_of(
    header_bytes,
    st.tuples(st.sampled_from([b"wla.", b"wls.", b"wlo.", b"."]), header_bytes).map(b"".join),
    st.tuples(
        st.sampled_from([b"wla.", b"wls."]),
        st.sampled_from([ACCOUNT.encode(), SERVER.encode(), b""]),
        st.just(b"."),
        header_bytes,
    ).map(b"".join),
    short_text.map(lambda t: _header_value(t.encode("utf-8", "surrogatepass"))),
)
authorizations = st.one_of(
    tokens.map(lambda token: b"Bearer " + token),
    st.tuples(st.sampled_from([b"bearer ", b"Bearer", b"Basic ", b"", b"Bearer  "]), tokens).map(
        b"".join
    ),
)
other_headers = st.tuples(
    st.sampled_from([b"Content-Type", b"Accept", b"Content-Encoding", b"Cookie", b"Expect"]),
    st.one_of(
        header_bytes,
        st.sampled_from(
            [b"gzip", b"deflate", b"br", b"application/json; charset=\xff", b"100-continue"]
        ),
    ),
)
body_bytes = st.one_of(
    st.binary(max_size=200),
    st.tuples(
        st.sampled_from([b'{"actions":[{"type":"watched","guid":"', b'{"id":"x","name":"']),
        st.binary(max_size=20),
        st.sampled_from([b'"}]}', b'","kind":"full"}', b""]),
    ).map(b"".join),
)


@dataclass(frozen=True, repr=False)
class Request:
    """A request to send: ``caller``'s valid token unless ``authorization`` replaces it."""

    operation: str
    method: str
    target: bytes
    caller: str | None
    authorization: bytes | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None
    content_type: bytes | None = b"application/json"

    def __repr__(self) -> str:
        def short(value: bytes | None) -> str:
            if value is None or len(value) <= 300:
                return repr(value)
            return f"{value[:300]!r}... ({len(value)} bytes)"

        return (
            f"Request({self.operation}: {self.method} {short(self.target)}, caller="
            f"{self.caller!r}, authorization={short(self.authorization)}, headers="
            f"{self.headers!r}, content_type={self.content_type!r}, body={short(self.body)})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # how Hypothesis shows a failing example

    async def send(self, client: TestClient[Any, Any], who: Principals) -> RawResponse:
        headers = list(self.headers)
        if self.authorization is not None:
            headers.insert(0, (b"Authorization", self.authorization))
        elif self.caller is not None:
            headers.insert(0, (b"Authorization", f"Bearer {who.of(self.caller)}".encode()))
        return await send(
            client,
            self.method,
            self.target,
            headers=headers,
            body=self.body,
            content_type=self.content_type,
        )


BY_ID = {e.operation_id: e for e in ENDPOINTS}
WITH: dict[str, Callable[[Endpoint], bool]] = {
    "path": lambda e: "{" in e.path,
    "query": lambda e: e.query is not None,
    "header": lambda e: True,
    "json": lambda e: e.body is not None,
    "bytes": lambda e: e.body is not None,
}


@st.composite
def hostile_requests(draw: st.DrawFn, hostile: str) -> Request:
    """A request to an endpoint whose ``hostile`` part (``path``, ``query``, ``header``,
    ``json`` or ``bytes`` body) is hostile, and whose other parts are mostly right."""
    operation = draw(st.sampled_from(sorted(i for i, e in BY_ID.items() if WITH[hostile](e))))
    endpoint = BY_ID[operation]
    request = Request(
        operation,
        endpoint.method,
        draw(targets(endpoint, hostile=hostile)),
        draw(callers(endpoint)),
    )
    if hostile == "header":
        if draw(st.booleans()) and endpoint.auth:
            request = replace(request, authorization=draw(authorizations))
        extra = tuple(draw(st.lists(other_headers, max_size=3)))
        typed = any(name == b"Content-Type" for name, _ in extra)
        request = replace(
            request, headers=extra, content_type=None if typed else b"application/json"
        )
    if endpoint.body is None:
        return request
    if hostile == "bytes":
        body = draw(body_bytes)
    elif hostile == "json":
        value = draw(st.one_of(fields_of(endpoint.body), json_values))
        body = encode_json(value, draw(st.sampled_from(["escaped", "raw"])))
    else:
        body = encode_json(draw(fields_of(endpoint.body)), "escaped")
    # One over the limit is cut off mid-upload, which a raw client sees as a reset.
    assume(len(body) < MAX_BODY)
    return replace(request, body=body)


@pytest.fixture
def logged() -> Iterator[Logged]:
    with server_errors() as entries:
        yield entries


@pytest.fixture
async def who(client: TestClient[Any, Any], logged: Logged) -> Principals:
    return await principals(client)


async def no_5xx(
    client: TestClient[Any, Any], who: Principals, logged: Logged, request: Request
) -> None:
    note(repr(request))  # shown with any failure, an assertion's or not
    response = await request.send(client, who)
    assert response.status < 500, f"{request!r}\n{explain(response, logged)}"


# -- the properties ---------------------------------------------------------------------------


@FUZZ
@given(request=hostile_requests("path"))
async def test_no_path_parameter_gets_a_5xx(
    client: TestClient[Any, Any], who: Principals, logged: Logged, request: Request
) -> None:
    await no_5xx(client, who, logged, request)


@FUZZ
@given(request=hostile_requests("query"))
async def test_no_query_parameter_gets_a_5xx(
    client: TestClient[Any, Any], who: Principals, logged: Logged, request: Request
) -> None:
    await no_5xx(client, who, logged, request)


@FUZZ
@given(request=hostile_requests("header"))
async def test_no_header_gets_a_5xx(
    client: TestClient[Any, Any], who: Principals, logged: Logged, request: Request
) -> None:
    await no_5xx(client, who, logged, request)


@FUZZ
@given(request=hostile_requests("json"))
async def test_no_json_body_gets_a_5xx(
    client: TestClient[Any, Any], who: Principals, logged: Logged, request: Request
) -> None:
    await no_5xx(client, who, logged, request)


@FUZZ
@given(request=hostile_requests("bytes"))
async def test_no_body_bytes_get_a_5xx(
    client: TestClient[Any, Any], who: Principals, logged: Logged, request: Request
) -> None:
    await no_5xx(client, who, logged, request)
