"""`watchledger replay` and `watchledger verify`: the operators' side of
:mod:`projections.replay` — choosing projections, showing progress, printing the outcome.

Progress is a bar on a terminal (tqdm: a well-kept library that redraws one line, estimates
the time left, and stays quiet when it cannot draw); anywhere else, structured progress lines
at most every few seconds, so a log collector gets a record of a long replay, not a flood.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from tqdm import tqdm

from projections.catalog import all_projections
from projections.protocol import Projection
from projections.replay import (
    Connect,
    ReplayError,
    ReplayReport,
    VerifyReport,
    copy_at,
    replay,
    verify,
)

log = structlog.get_logger(__name__)

_LINE_EVERY = 5.0


def projection_names() -> list[str]:
    return [p.name for p in all_projections()]


def chosen(name: str) -> list[Projection]:
    """The projections ``name`` names (``all``: every one)."""
    return [p for p in all_projections() if name in ("all", p.name)]


@contextmanager
def progress_shown(what: str, *, terminal: bool | None = None) -> Iterator[Any]:
    """A progress callback (events done, events in all) for the duration."""
    if sys.stderr.isatty() if terminal is None else terminal:
        bar = tqdm(total=0, unit="ev", unit_scale=True, desc=what, file=sys.stderr, leave=True)
        try:

            def show(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            yield show
        finally:
            bar.close()
        return
    last = 0.0

    def line(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _LINE_EVERY or done == total:
            last = now
            log.info(f"{what}_progress", events=done, of=total)

    yield line


async def run_replay(
    conn: asyncpg.Connection[Any],
    projections: Sequence[Projection],
    *,
    until_position: int | None = None,
    until_time: datetime | None = None,
    into: str | None = None,
    connect: Connect | None = None,
    workers: int = 1,
) -> ReplayReport:
    """Replay with a swap (on up to ``workers`` connections, given ``connect``), or (a bound
    or ``into`` given) a point-in-time copy."""
    point_in_time = until_position is not None or until_time is not None or into is not None
    with progress_shown("replay") as progress:
        if point_in_time:
            return await copy_at(
                conn,
                projections,
                into or "watchledger_as_of",
                until_position=until_position,
                until_time=until_time,
                progress=progress,
            )
        return await replay(conn, projections, progress=progress, connect=connect, workers=workers)


async def run_verify(
    conn: asyncpg.Connection[Any], projections: Sequence[Projection]
) -> VerifyReport:
    with progress_shown("verify") as progress:
        return await verify(conn, projections, progress=progress)


def replay_summary(report: ReplayReport, *, copied: bool) -> str:
    rate = report.events / report.seconds if report.seconds else 0.0
    names = ", ".join(p.name for p in report.projections)
    dead = sum(p.dead_letters for p in report.projections)
    where = f"into schema {report.schema}" if copied else "and swapped in"
    return (
        f"replayed {names}: {report.events:,} events up to position {report.through.position} "
        f"{where} in {report.seconds:.1f} s ({rate:,.0f} events/s); "
        f"{dead} dead letters"
    )


def verify_summary(report: VerifyReport) -> list[str]:
    if report.ok:
        return [f"verified {report.tables} tables: no differences ({report.seconds:.1f} s)"]
    lines = [f"differences in {len(report.differences)} of {report.tables} tables:"]
    for d in report.differences:
        accounts = ", ".join(d.accounts)
        lines.append(
            f"  {d.projection}.{d.table}: {d.only_live} rows only in the live table, "
            f"{d.only_rebuilt} only in the rebuild; accounts: {accounts}"
        )
    return lines


__all__ = [
    "ReplayError",
    "chosen",
    "projection_names",
    "replay_summary",
    "run_replay",
    "run_verify",
    "verify_summary",
]
