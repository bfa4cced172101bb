"""Prometheus metrics: HTTP rates and latencies by route and status, projection progress,
lag and errors. One registry per application (so tests can run many side by side)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import asyncpg
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from projections.runner import ProjectionRunner
from services.runtime.version import VERSION

from .errors import Handler

log = structlog.get_logger(__name__)

# A counter's `_created` series doubles every series for a value Prometheus does not use.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Requests that hold by design (long-polls, feed streams): timed in a histogram of their own,
# so that they do not drown the latency of the others.
LONG_ROUTES = frozenset({"/v1/servers/{sid}/changes", "/v1/me/feed/stream"})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        # The process (CPU, memory, open files), the interpreter and its garbage collector.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        Info("watchledger_build", "The release this process runs.", registry=self.registry).info(
            {"version": VERSION}
        )
        self.requests = Counter(
            "watchledger_http_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "watchledger_http_request_duration_seconds",
            "Time to serve an HTTP request, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
            ),
        )
        self.long_latency = Histogram(
            "watchledger_http_long_request_duration_seconds",
            "Time a long-poll (GET /v1/servers/{sid}/changes) or a feed stream was held, by "
            "route template and status.",
            ["route", "status"],
            registry=self.registry,
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900, 3600),
        )
        self.in_flight = Gauge(
            "watchledger_http_requests_in_flight",
            "HTTP requests being served right now.",
            registry=self.registry,
        )
        # Outcomes of actions and server events, by source kind and outcome. Never by server:
        # nothing may tie an action to the server it came from (product rule 2).
        self.actions = Counter(
            "watchledger_actions",
            "Actions and server events received, by source (account or server) and outcome.",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.long_polls = Gauge(
            "watchledger_long_polls_waiting",
            "GET /v1/servers/{sid}/changes requests holding for a change right now.",
            registry=self.registry,
        )
        self.feed_streams = Gauge(
            "watchledger_feed_streams_open",
            "GET /v1/me/feed/stream connections open right now.",
            registry=self.registry,
        )
        self.lag = Gauge(
            "watchledger_projection_lag_events",
            "Events in the log a projection has not applied yet (as last sampled).",
            ["projection"],
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "watchledger_projection_lag_seconds",
            "How long ago the oldest event a projection has not applied yet was recorded (0: "
            "caught up), as last sampled.",
            ["projection"],
            registry=self.registry,
        )
        self.queued = Gauge(
            "watchledger_sync_queue_items",
            "Changes waiting in the servers' outbound queues, all servers together (as last "
            "sampled; never by server or account).",
            registry=self.registry,
        )
        self.head = Gauge(
            "watchledger_log_head_position",
            "The highest position in the event log (as last sampled).",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "watchledger_database_up",
            "1 while the database answers, 0 while it cannot be reached (as this process last"
            " found it; projection lag and log head keep their last known values meanwhile).",
            registry=self.registry,
        )

    @property
    def handler(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """prometheus_client's aiohttp handler of this registry."""
        if self._handler is None:
            self._handler = make_aiohttp_handler(self.registry)
        return self._handler

    def watch_runners(self, runners: Sequence[ProjectionRunner]) -> None:
        self.registry.register(_RunnerCollector(runners))

    def watch_pool(self, pool: asyncpg.Pool[Any]) -> None:
        self.registry.register(_PoolCollector(pool))

    def count_results(self, source: str, results: Sequence[object]) -> None:
        for result in results:
            outcome = getattr(result, "code", None) or type(result).__name__.lower()
            self.actions.labels(source, outcome).inc()

    def middleware(self) -> Middleware:
        metrics = self

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = time.perf_counter()
            status = 500
            metrics.in_flight.inc()
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                metrics.in_flight.dec()
                info = request.match_info.route.resource
                route = info.canonical if info is not None else "unmatched"
                seconds = time.perf_counter() - started
                # A client may send any method: the label takes only the known ones.
                method = request.method if request.method in _METHODS else "other"
                metrics.requests.labels(route, method, str(status)).inc()
                if route in LONG_ROUTES:
                    metrics.long_latency.labels(route, str(status)).observe(seconds)
                else:
                    metrics.latency.labels(route, method, str(status)).observe(seconds)
                # The access log: the route's template, never its path or query (which may
                # name a title), nor any header (which may hold a token).
                log.info(
                    "request",
                    method=request.method,
                    route=route,
                    status=status,
                    ms=round(seconds * 1000, 2),
                )

        return record


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _PoolCollector(Collector):
    """The database pool's connections at scrape time: in use, idle, and the most it opens."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    def collect(self) -> Iterable[Metric]:
        connections = GaugeMetricFamily(
            "watchledger_db_pool_connections",
            "Connections of the database pool, by state (in use or idle).",
            labels=["state"],
        )
        idle = self._pool.get_idle_size()
        connections.add_metric(["in_use"], self._pool.get_size() - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily(
            "watchledger_db_pool_max_connections",
            "The most connections the pool opens (WATCHLEDGER_POOL_SIZE).",
            value=self._pool.get_max_size(),
        )


class _RunnerCollector(Collector):
    """Reads the runners' in-memory counters at scrape time."""

    def __init__(self, runners: Sequence[ProjectionRunner]) -> None:
        self._runners = runners

    def collect(self) -> Iterable[Metric]:
        applied = CounterMetricFamily(
            "watchledger_projection_events_applied",
            "Events applied by this process's runner of a projection.",
            labels=["projection"],
        )
        errors = CounterMetricFamily(
            "watchledger_projection_errors",
            "Batches that failed (rolled back, retried) in this process's runner.",
            labels=["projection"],
        )
        dead_letters = CounterMetricFamily(
            "watchledger_projection_dead_letters",
            "Events this process's runner could not apply and kept as dead letters.",
            labels=["projection"],
        )
        position = GaugeMetricFamily(
            "watchledger_projection_position",
            "Position of the last event this process's runner applied.",
            labels=["projection"],
        )
        active = GaugeMetricFamily(
            "watchledger_projection_active",
            "1 if this process holds the projection's lock and applies it; 0 on standby.",
            labels=["projection"],
        )
        for runner in self._runners:
            applied.add_metric([runner.name], runner.stats.applied)
            errors.add_metric([runner.name], runner.stats.errors)
            dead_letters.add_metric([runner.name], runner.stats.dead_letters)
            position.add_metric([runner.name], runner.stats.cursor.position)
            active.add_metric([runner.name], 1 if runner.stats.active else 0)
        yield from (applied, errors, dead_letters, position, active)
