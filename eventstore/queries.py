"""Named SQL queries kept in ``.sql`` files, one query per ``-- name --`` block."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_HEADER = re.compile(r"^-- ([a-z_][a-z0-9_]*) --\s*$", re.MULTILINE)


def parse_queries(text: str) -> Mapping[str, str]:
    """Split a queries file into ``{name: sql}``; text before the first header is ignored."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        sql = "\n".join(line for line in body.strip().splitlines() if not line.startswith("--"))
        queries[name] = sql.strip().rstrip(";")
    return MappingProxyType(queries)


def load_queries(package: str, filename: str = "sql/queries.sql") -> Mapping[str, str]:
    """Load a package's named queries (read once, at import of the module that calls this)."""
    return parse_queries(resources.files(package).joinpath(filename).read_text(encoding="utf-8"))


QUERIES = load_queries("eventstore")
