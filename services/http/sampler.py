"""The figures of ``/metrics`` that only the database knows — projection lag (events and
seconds), the log's head, the changes queued for servers — sampled every few seconds by a
background task, so that a scrape answers from memory at once, database or not (during an
outage the gauges keep their last values and ``watchledger_database_up`` says 0)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog

from eventstore import database as db
from projections import queues
from projections import runner as projection_runner
from services.commands.progress import PROJECTION_NAMES
from services.commands.reads import Reads

from .errors import DatabaseHealth
from .metrics import Metrics

log = structlog.get_logger(__name__)

# One sample must not outlast its turn: a slow database leaves the last values in place.
_SAMPLE_TIMEOUT = 2.0


class MetricsSampler:
    def __init__(
        self,
        metrics: Metrics,
        reads: Reads,
        pool: asyncpg.Pool[Any],
        health: DatabaseHealth,
        *,
        interval: float,
    ) -> None:
        self._metrics = metrics
        self._reads = reads
        self._pool = pool
        self._health = health
        self._interval = interval

    async def run(self) -> None:
        """Sample every ``interval`` seconds, forever (until cancelled)."""
        while True:
            try:
                async with asyncio.timeout(_SAMPLE_TIMEOUT):
                    await self.sample()
            except TimeoutError:
                pass  # slow: the last values stay, and the next turn tries again
            except Exception as exc:  # noqa: BLE001 - a sample never takes the service down
                log.warning("metrics_sample_failed", error=type(exc).__name__)
            await asyncio.sleep(self._interval)

    async def sample(self) -> None:
        """Read the figures once into the gauges; a database that cannot be reached is told to
        :class:`DatabaseHealth` (the gauges keep their last values)."""
        metrics = self._metrics
        try:
            status = await self._reads.projections()
            async with self._pool.acquire() as conn:
                ages: dict[str, float] = {}
                for name in PROJECTION_NAMES:
                    cursor = await projection_runner.checkpoint(conn, name)
                    # The database's clock, which recorded the events (not this host's).
                    age = await conn.fetchval(
                        projection_runner.QUERIES["oldest_after"],
                        cursor.transaction_id,
                        cursor.position,
                    )
                    ages[name] = 0.0 if age is None else age
                queued: int = await conn.fetchval(queues.QUERIES["queue_depth"])
        except Exception as exc:
            if not db.unavailable(exc):
                raise
            self._health.failed(exc)
            return
        for item in status:
            metrics.lag.labels(item.name).set(item.lag)
            metrics.head.set(item.head)
        for name, age in ages.items():
            metrics.lag_seconds.labels(name).set(max(0.0, age))
        metrics.queued.set(queued)
