"""``watchledger bench load``: single actions from thousands of accounts, driven by ``wrk``
(a C load generator: a Python client tops out near a few thousand requests a second on this
kind of machine, below what is measured), against a ``watchledger serve`` child process.

* Each request is one ``watched`` action of a new title, by the next of ``accounts`` accounts
  in turn (so no two consecutive requests share an account, as in a real population).
* The ceiling, in the same run: single-row commits of event-shaped rows (with the log's keys)
  from 16 connections, driven by ``pgbench`` — what PostgreSQL itself does with one durable
  write a transaction.
* Read-your-writes under that load: a probe posts an action and then reads the title's state;
  the time until the read shows it (p50/p99), and how many reads did not show it (must be 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from eventstore import database as db

from .bench import (
    QUERIES,
    Figure,
    Latency,
    projections_caught_up,
    running_server,
    scratch_database,
    server_pid,
)
from .bench_feeds import proc_stats

_WRK_SCRIPT = """
local tokens = {%(tokens)s}
local counter = 1
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
local n = 0
request = function()
  n = n + 1
  local token = tokens[((n * 7 + id) %% #tokens) + 1]
  local body = string.format(
    '{"actions":[{"type":"watched","guid":"tmdb://movie/%%d"}]}', id * 100000000 + n)
  return wrk.format("POST", "/v1/me/actions",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
"""

_PGBENCH_SCRIPT = """\\set v random(1, 9000000000000000000)
INSERT INTO bench_insert (account_id, stream, version, event_id, type, schema_version, data)
VALUES ('p' || :client_id, 'watch-p' || :client_id, :v, gen_random_uuid(), 'bench_watched', 1,
        '{"guid": "tmdb://movie/1", "at": "2026-11-21T10:00:00Z", "watched": true}');
"""


def ensure_tool(name: str, package: str) -> str:
    """The path of ``name``, installing Debian's ``package`` when it is missing (the benchmark's
    load generator is not a Python dependency)."""
    found = shutil.which(name)
    if found:
        return found
    print(f"installing {package} (apt-get) for the load generator", file=sys.stderr)
    subprocess.run(  # noqa: S603 - fixed arguments
        ["apt-get", "install", "-y", "-q", package],  # noqa: S607 - apt-get from PATH
        check=True,
        stdout=subprocess.DEVNULL,
    )
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not on PATH after installing {package}")
    return found


def _wrk_rate(output: str) -> tuple[float, int]:
    """Requests per second and non-2xx answers from wrk's summary."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return float(rate.group(1)), int(errors.group(1)) if errors else 0


def _pgbench_rate(output: str) -> float:
    found = re.search(r"tps = ([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"pgbench printed no rate:\n{output}")
    return float(found.group(1))


async def _accounts(http: aiohttp.ClientSession, operator: str, count: int) -> list[str]:
    """``count`` accounts, made 16 at a time; their tokens."""
    headers = {"Authorization": f"Bearer {operator}"}

    async def make(k: int) -> str:
        body = {"id": f"load{k}", "kind": "full", "name": f"load{k}"}
        async with http.post("/v1/accounts", json=body, headers=headers) as response:
            response.raise_for_status()
            return str((await response.json())["token"])

    tokens: list[str] = []
    for start in range(0, count, 16):
        tokens += await asyncio.gather(*(make(k) for k in range(start, min(count, start + 16))))
    return tokens


async def _probe(
    http: aiohttp.ClientSession, token: str, stop: asyncio.Event
) -> tuple[list[float], int]:
    """Post an action, then read its title: how long until the read shows it; reads that did
    not show it."""
    headers = {"Authorization": f"Bearer {token}"}
    lags: list[float] = []
    stale = 0
    while not stop.is_set():
        guid = f"tmdb://movie/{uuid.uuid4().int % 10**12 + 10**13}"
        started = time.perf_counter()
        body = {"actions": [{"type": "watched", "guid": guid}]}
        async with http.post("/v1/me/actions", json=body, headers=headers) as response:
            response.raise_for_status()
        async with http.get(f"/v1/me/state/{guid}", headers=headers) as response:
            if response.status != 200 or not (await response.json()).get("watched"):
                stale += 1
        lags.append(time.perf_counter() - started)
    return lags, stale


@contextlib.asynccontextmanager
async def _lua(tokens: list[str]) -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="watchledger-load-") as folder:
        script = Path(folder) / "actions.lua"
        script.write_text(_WRK_SCRIPT % {"tokens": ",".join(json.dumps(t) for t in tokens)})
        yield script


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}):\n{text}")
    return text


async def _single_row_commits(scratch: str, seconds: float) -> Figure:
    """pgbench: 16 connections, one event-shaped INSERT a transaction, for ``seconds``."""
    pgbench = ensure_tool("pgbench", "postgresql-client")
    conn = await db.connect(scratch)
    try:
        await conn.execute(QUERIES["bench_tables"])
    finally:
        await conn.close()
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(_PGBENCH_SCRIPT)
        script.flush()
        # libpq takes the whole URL as the database name: host, port, socket and all.
        out = await _run(
            pgbench, "-n", "-c", "16", "-j", "2", "-T", str(max(1, round(seconds))),
            "-f", script.name, scratch,
        )  # fmt: skip
    tps = _pgbench_rate(out)
    return Figure("  ceiling: single-row commits, 16 connections (pgbench)", int(tps * seconds),
                  seconds, ceiling=True)  # fmt: skip


class Memory(msgspec.Struct, frozen=True):
    """The ``serve`` process's resident memory under the load (MiB): once warmed up (a tenth
    of the way in), at the end, and the most seen."""

    warm: float
    end: float
    peak: float

    @property
    def change(self) -> float:
        return self.end / self.warm - 1 if self.warm else 0.0

    def line(self) -> str:
        return (
            f"serve RSS under that load: {self.warm:.0f} MiB a tenth of the way in, "
            f"{self.end:.0f} MiB at the end ({self.change:+.1%}), peak {self.peak:.0f} MiB"
        )


async def _sample_memory(pid: int, seconds: float, stop: asyncio.Event) -> Memory:
    """The process's RSS every 1/50 of the run (at least every half second) until ``stop``."""
    every = max(0.5, seconds / 50)
    samples: list[tuple[float, float]] = []
    started = time.monotonic()
    while not stop.is_set():
        samples.append((time.monotonic() - started, proc_stats(pid)[0]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    samples.append((time.monotonic() - started, proc_stats(pid)[0]))
    warm = next((rss for at, rss in samples if at >= seconds / 10), samples[-1][1])
    return Memory(warm, samples[-1][1], max(rss for _, rss in samples))


# pgbench's ceiling is steady within seconds: a long run (the memory check's ten minutes)
# measures it for at most this long.
_CEILING_SECONDS = 60.0

# The mixed load's other traffic: a server's batches (events a batch, over as many accounts),
# and the feed readers.
_MIX_BATCH = 100
_MIX_FRIENDS = 20


class _Mix:
    """Traffic beside wrk's single actions (``--mixed``): a server posting batches spanning
    its accounts while it long-polls its changes (acknowledging them), and a person reading
    their friends' feed and history while holding the feed's live stream open. Counts what
    each did."""

    def __init__(self, http: aiohttp.ClientSession, operator: str, tokens: list[str]) -> None:
        self._http = http
        self._admin = {"Authorization": f"Bearer {operator}"}
        self._tokens = tokens
        self._reader = self._server = ""
        self._members: list[str] = []
        self.events = 0
        self.reads = 0
        self.changes = 0
        self.streamed = 0

    async def _call(self, method: str, path: str, token: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        async with self._http.request(method, path, json=body, headers=headers) as response:
            response.raise_for_status()
            return await response.json() if response.status != 204 else None

    async def setup(self, reader: str) -> None:
        """The reader owns server ``mix``; the first accounts share it, with sync on; the first
        of them are the reader's friends."""
        created = await self._call(
            "POST", "/v1/servers", reader, {"id": "mix", "name": "mix", "version": "1.40.0.1"}
        )
        self._server = str(created["token"])
        me = await self._call("GET", "/v1/me", reader)
        for k, token in enumerate(self._tokens[:_MIX_BATCH]):
            account = (await self._call("GET", "/v1/me", token))["id"]
            self._members.append(account)
            await self._call("PUT", f"/v1/servers/mix/access/{account}", reader)
            await self._call("PUT", "/v1/me/servers/mix", token)
            await self._call("PATCH", "/v1/me", token, {"sync_enabled": True})
            if k < _MIX_FRIENDS:
                await self._call("PUT", f"/v1/me/friends/{account}", reader)
                await self._call("PUT", f"/v1/me/friends/{me['id']}", token)
        self._reader = reader

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [self._ingest(stop), self._poll(stop), self._read(stop), self._stream(stop)]
        await asyncio.gather(*tasks)

    async def _ingest(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            events = []
            for account in self._members:
                n += 1
                events.append(
                    {"account": account, "type": "watched", "guid": f"plex://episode/{n:024x}"}
                )
            await self._call("POST", "/v1/servers/mix/events", self._server, {"events": events})
            self.events += len(events)

    async def _poll(self, stop: asyncio.Event) -> None:
        cursor: str | None = None
        while not stop.is_set():
            query = "wait=1&limit=1000" + (f"&cursor={cursor}" if cursor else "")
            body = await self._call("GET", f"/v1/servers/mix/changes?{query}", self._server)
            cursor = body["cursor"]
            self.changes += len(body["changes"])

    async def _read(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._call("GET", "/v1/me/feed?limit=50", self._reader)
            member = self._tokens[self.reads % len(self._members)]
            await self._call("GET", "/v1/me/history?limit=50", member)
            self.reads += 2

    async def _stream(self, stop: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {self._reader}"}
        # Open for the whole run: no total time limit (the session's default is 5 minutes).
        forever = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self._http.get(
            "/v1/me/feed/stream", headers=headers, timeout=forever
        ) as response:
            response.raise_for_status()
            reading = asyncio.ensure_future(self._count_stream(response))
            await stop.wait()
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading

    async def _count_stream(self, response: aiohttp.ClientResponse) -> None:
        async for line in response.content:
            if line.startswith(b"data:"):
                self.streamed += 1

    def figures(self, seconds: float) -> list[Figure]:
        return [
            Figure(
                f"  beside it: POST /v1/servers/{{sid}}/events, {_MIX_BATCH} accounts a batch",
                self.events,
                seconds,
            ),
            Figure("  beside it: changes long-polled by that server", self.changes, seconds),
            Figure("  beside it: GET feed and history pages", self.reads, seconds),
            Figure("  beside it: activities through one live feed stream", self.streamed, seconds),
        ]


async def bench_load(
    url: str,
    *,
    accounts: int,
    connections: int,
    seconds: float,
    template: str | None = None,
    mixed: bool = False,
) -> tuple[list[Figure], list[Latency], Memory]:
    """wrk's single actions (and with ``mixed``, :class:`_Mix`'s traffic beside them) for
    ``seconds``, read-your-writes probed meanwhile, the server's memory sampled; then
    pgbench's single-row commits, the ceiling."""
    wrk = ensure_tool("wrk", "wrk")
    operator = f"wlo.{secrets.token_urlsafe(32)}"
    async with (
        scratch_database(url, template=template) as scratch,
        running_server(scratch, operator) as base,
        aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        tokens = await _accounts(http, operator, accounts + 1)
        probe_token, tokens = tokens[0], tokens[1:]
        mix = _Mix(http, operator, tokens) if mixed else None
        if mix is not None:
            await mix.setup(probe_token)
        stop = asyncio.Event()
        async with _lua(tokens) as script:
            probe = asyncio.create_task(_probe(http, probe_token, stop))
            memory = asyncio.create_task(_sample_memory(server_pid(base), seconds, stop))
            beside = asyncio.create_task(mix.run(stop)) if mix is not None else None
            try:
                out = await _run(
                    wrk, "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s",
                    "-s", str(script), base,
                )  # fmt: skip
            finally:
                stop.set()
                lags, stale = await probe
                rss = await memory
                if beside is not None:
                    await beside
        settled = await projections_caught_up(http, {"Authorization": f"Bearer {operator}"})
        rate, errors = _wrk_rate(out)
        if errors:
            raise RuntimeError(f"{errors} requests were not answered 2xx under load")
        figures = [
            Figure(
                f"POST /v1/me/actions, 1 action/request, {connections} connections (wrk), "
                f"{accounts:,} accounts",
                int(rate * seconds),
                seconds,
            ),
            await _single_row_commits(scratch, min(seconds, _CEILING_SECONDS)),
            *(mix.figures(seconds) if mix is not None else []),
        ]
    name = f"read-your-writes under that load ({stale} stale reads)"
    settling = Latency("load stopped -> every projection caught up", [settled])
    return figures, [Latency(name, lags), settling], rss
