"""The service's named queries (``queries.sql``), loaded once."""

from __future__ import annotations

from eventstore.queries import load_queries

QUERIES = load_queries("services")
