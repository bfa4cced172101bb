"""A connector's Prometheus metrics, served on its listener's ``/metrics``.

Labels say what kind of thing happened, never to whom or to which title (no user, account,
item or title label: a metric must not pair an account with what it watched).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ConnectorMetrics:
    """One registry a connector (tests run several in one process)."""

    def __init__(self, kind: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.info = Gauge(
            "watchledger_connector_info",
            "The media server this connector bridges.",
            ["kind"],
            registry=r,
        )
        self.info.labels(kind=kind).set(1)
        self.webhooks = Counter(
            "watchledger_connector_webhooks_total",
            "Webhook requests by outcome (accepted, ignored, no_user, unmapped_user, bad, "
            "unauthorized, deferred).",
            ["outcome"],
            registry=r,
        )
        self.events_sent = Counter(
            "watchledger_connector_events_sent_total",
            "Server events sent to watchledger, by type and result (recorded, duplicate, "
            "rejected, refused).",
            ["type", "result"],
            registry=r,
        )
        self.changes = Counter(
            "watchledger_connector_changes_total",
            "Changes from watchledger, by outcome (applied, already_set, not_in_library, "
            "unmapped_account, no_state, local_change_first, baseline).",
            ["outcome"],
            registry=r,
        )
        self.writes = Counter(
            "watchledger_connector_media_writes_total",
            "Writes to the media server (played, unplayed, rated, unrated).",
            ["write"],
            registry=r,
        )
        self.errors = Counter(
            "watchledger_connector_errors_total",
            "Failed calls, by side (media_server, watchledger).",
            ["side"],
            registry=r,
        )
        self.outbox = Gauge(
            "watchledger_connector_outbox_events",
            "Events waiting to be accepted by watchledger.",
            registry=r,
        )
        self.deferred = Gauge(
            "watchledger_connector_deferred_changes",
            "Changes kept for titles the library does not hold (applied when one arrives).",
            registry=r,
        )
        self.polls = Histogram(
            "watchledger_connector_poll_seconds",
            "Time of one full poll of every mapped user's watch data.",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900),
            registry=r,
        )
        self.apply = Histogram(
            "watchledger_connector_change_apply_seconds",
            "Time from receiving a change to having applied it to the media server.",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=r,
        )
        self._last_poll = 0.0
        self.poll_age = Gauge(
            "watchledger_connector_poll_age_seconds",
            "Seconds since the last full poll ended (lag of changes that send no webhook).",
            registry=r,
        )
        self.poll_age.set_function(
            lambda: time.monotonic() - self._last_poll if self._last_poll else float("nan")
        )

    def polled(self) -> None:
        self._last_poll = time.monotonic()
